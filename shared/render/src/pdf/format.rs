//! `docbundle.typ`, the Typst side of the locale formatting: the library a template imports,
//! and the answers to the virtual files under `/.format/` that its functions read.

use typst::diag::{FileError, FileResult};
use typst::foundations::Bytes;

/// The Typst side of [`crate::locale`]: `#import "docbundle.typ" as fmt`, then
/// `fmt.money(12345.5, "EUR", "de-DE")` → `12.345,50 €`. Each function reads a virtual file
/// under `/.format/` that the world computes from its path (see [`format_file`]): Typst has no
/// other way to call into the host, and the answer is as deterministic as any file's.
pub(super) const FORMAT_LIBRARY: &str = r#"// Locale formatting with CLDR data, provided by docbundle.
#let _arg(value) = {
  let text = str(value)
  if text == "" or text.contains("/") or text == "." or text == ".." {
    panic("docbundle.typ: an argument may not be empty or hold a slash: " + repr(text))
  }
  text
}
#let _zone(zone) = {
  for part in str(zone).split("/") {
    if part == "" or part == "." or part == ".." {
      panic("docbundle.typ: not a time zone name: " + repr(str(zone)))
    }
  }
  str(zone)
}
#let _format(kind, ..args) = read("/.format/" + kind + "/" + args.pos().join("/"))
#let _digits(digits) = if digits == none { "-" } else { _arg(digits) }
/// money(12345.5, "EUR", "de-DE") → 12.345,50 €
#let money(value, currency, locale) = _format("money", _arg(currency), _arg(locale), _arg(value))
/// number(1234.5, "en-US") → 1,234.5; digits: fixed fraction digits
#let number(value, locale, digits: none) = _format("number", _arg(locale), _digits(digits), _arg(value))
/// percent(0.19, "de-DE") → 19 %
#let percent(value, locale, digits: none) = _format("percent", _arg(locale), _digits(digits), _arg(value))
/// date("2026-11-30", "de-DE", style: "long") → 30. November 2026
#let date(value, locale, style: "medium", zone: "UTC") = _format("date", _arg(locale), _arg(style), _arg(value), _zone(zone))
/// datetime("2026-11-30T09:05:00Z", "de-DE", zone: "Europe/Berlin") → 30.11.2026, 10:05:00 MEZ
#let datetime(value, locale, zone: "UTC", style: "medium") = _format("datetime", _arg(locale), _arg(style), _arg(value), _zone(zone))
"#;

pub(super) const FORMAT_LIBRARY_PATH: &str = "docbundle.typ";
pub(super) const FORMAT_PREFIX: &str = "/.format/";

/// The answer to a `/.format/<kind>/<arguments…>` read: the formatted text, or the reason
/// as the file's error (which Typst reports at the template's call).
pub(super) fn format_file(path: &str) -> FileResult<Bytes> {
    let failed = |message: String| FileError::Other(Some(message.into()));
    // Typst writes a negative number's sign as U+2212.
    let path = path.replace('\u{2212}', "-");
    let rest = path.strip_prefix(FORMAT_PREFIX).unwrap_or_default();
    let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let digits = |raw: &str| -> Result<Option<u8>, String> {
        match raw {
            "-" => Ok(None),
            other => other
                .parse::<u8>()
                .map(Some)
                .map_err(|_| format!("digits must be 0 to {}", crate::locale::MAX_DIGITS)),
        }
    };
    // The locale's own messages, as the template's author reads them.
    let told = |error: crate::locale::LocaleError| error.to_string();
    let result = match kind {
        "money" => match rest.splitn(3, '/').collect::<Vec<_>>()[..] {
            [currency, locale, value] => {
                crate::locale::money(value, currency, locale).map_err(told)
            }
            _ => Err("money needs a value, a currency and a locale".to_owned()),
        },
        "number" | "percent" => match rest.splitn(3, '/').collect::<Vec<_>>()[..] {
            [locale, raw_digits, value] => digits(raw_digits).and_then(|d| {
                if kind == "number" {
                    crate::locale::number(value, locale, d).map_err(told)
                } else {
                    crate::locale::percent(value, locale, d).map_err(told)
                }
            }),
            _ => Err(format!("{kind} needs a value and a locale")),
        },
        // The zone comes last: IANA names have slashes of their own.
        "date" | "datetime" => match rest.splitn(4, '/').collect::<Vec<_>>()[..] {
            [locale, style, value, zone] if kind == "date" => {
                crate::locale::date(value, locale, style, zone).map_err(told)
            }
            [locale, style, value, zone] => {
                crate::locale::datetime(value, locale, zone, style).map_err(told)
            }
            _ => Err(format!("{kind} needs a value and a locale")),
        },
        other => Err(format!("there is no formatter `{other}`")),
    };
    result
        .map(|text| Bytes::new(text.into_bytes()))
        .map_err(|message| failed(format!("{kind}: {message}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pdf::tests::render;
    use crate::RenderLimits;

    #[test]
    fn locale_functions_format_as_cldr_says() {
        let template = r#"#import "docbundle.typ" as fmt
#let data = json("data.json")
#fmt.money(data.total, "EUR", "de-DE") | #fmt.money("0.10", "USD", "en-US") | #fmt.money(data.total, "JPY", "ja-JP")
#fmt.number(data.total, "de-DE", digits: 2) | #fmt.percent(0.125, "de-DE", digits: 1)
#fmt.date("2026-11-30", "de-DE", style: "long") | #fmt.datetime("2026-11-30T09:05:00Z", "en-US", zone: "America/Argentina/Buenos_Aires")
#datetime(year: 2026, month: 1, day: 2).display()"#;
        let pdf = render(
            template,
            &json!({"total": 12345.5}),
            &RenderLimits::default(),
        )
        .unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        // Typst writes negative numbers with U+2212: a refund formats like any amount.
        render(
            "#import \"docbundle.typ\" as fmt\n#fmt.money(-3.5, \"EUR\", \"de-DE\") #fmt.number(-2, \"en\") #fmt.percent(decimal(\"-0.5\"), \"en\")",
            &json!({}),
            &RenderLimits::default(),
        )
        .unwrap();
        assert_eq!(
            format_file("/.format/money/EUR/de-DE/\u{2212}3.5").map(|b| b.to_vec()),
            Ok("-3,50\u{a0}€".as_bytes().to_vec())
        );
        // A wrong argument is the template's error, placed at its call.
        let err = render(
            "#import \"docbundle.typ\" as fmt\n\n#fmt.money(1, \"EURO\", \"de-DE\")",
            &json!({}),
            &RenderLimits::default(),
        )
        .unwrap_err();
        assert!(err.message.contains("ISO 4217"), "{err:?}");
        assert_eq!(err.line, Some(3), "{err:?}");
        for (call, expected) in [
            ("fmt.money(\"../../x\", \"EUR\", \"de\")", "slash"),
            (
                "fmt.money(\"1e9999999999\", \"EUR\", \"de\")",
                "not a number",
            ),
            ("fmt.number(1, \"de\", digits: 99)", "digits"),
            (
                "fmt.datetime(\"2026-11-30T09:05:00Z\", \"de\", zone: \"Nowhere/At_All\")",
                "IANA",
            ),
            ("read(\"/.format/nope/x\")", "no formatter"),
            // Arguments cannot steer the virtual path: no slash outside a zone name.
            ("fmt.number(\"1/../777\", \"en-US\")", "slash"),
            ("fmt.number(\"../../../../data.json\", \"en-US\")", "slash"),
            ("fmt.date(\"2026-11-30\", \"de\", style: \"a/b\")", "slash"),
            (
                "fmt.datetime(\"2026-11-30T09:05:00Z\", \"de\", zone: \"../../etc/localtime\")",
                "zone",
            ),
        ] {
            let err = render(
                &format!("#import \"docbundle.typ\" as fmt\n#{call}"),
                &json!({}),
                &RenderLimits::default(),
            )
            .unwrap_err();
            assert!(err.message.contains(expected), "{call}: {err:?}");
        }
    }
}
