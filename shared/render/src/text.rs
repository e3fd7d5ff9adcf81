//! MiniJinja for the text formats, sandboxed: no loader (so no `include` of files), no
//! network, a fuel budget against runaway loops and a cap on output size. HTML output is
//! auto-escaped; JSON output escapes values as JSON and must parse as JSON.

use std::io::Write;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, Value};

use super::{
    DocumentFormat, DocumentRenderer, RenderInput, RenderLimits, TemplateError, TemplateErrorKind,
};

pub struct TextRenderer {
    format: DocumentFormat,
}

static HTML: TextRenderer = TextRenderer {
    format: DocumentFormat::Html,
};
static MD: TextRenderer = TextRenderer {
    format: DocumentFormat::Md,
};
static TXT: TextRenderer = TextRenderer {
    format: DocumentFormat::Txt,
};
static CSV: TextRenderer = TextRenderer {
    format: DocumentFormat::Csv,
};
static JSON: TextRenderer = TextRenderer {
    format: DocumentFormat::Json,
};
static XML: TextRenderer = TextRenderer {
    format: DocumentFormat::Xml,
};

/// The MiniJinja renderer of a text format; `None` for a format that is not text.
pub(super) fn renderer(format: DocumentFormat) -> Option<&'static TextRenderer> {
    match format {
        DocumentFormat::Html => Some(&HTML),
        DocumentFormat::Md => Some(&MD),
        DocumentFormat::Txt => Some(&TXT),
        DocumentFormat::Csv => Some(&CSV),
        DocumentFormat::Json => Some(&JSON),
        DocumentFormat::Xml => Some(&XML),
        DocumentFormat::Pdf => None,
    }
}

impl TextRenderer {
    fn environment(&self, limits: &RenderLimits) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(64);
        // Block tags on their own line leave no blank lines behind (CSV and Markdown need that),
        // and a final newline is kept.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // Every format says how its values are escaped: a new one cannot inherit "none".
        let escape = match self.format {
            // HTML escaping (`&amp; &lt; &gt; &quot; &#x27; &#x2f;`) is XML's too.
            DocumentFormat::Html | DocumentFormat::Xml => AutoEscape::Html,
            DocumentFormat::Json => AutoEscape::Json,
            DocumentFormat::Md | DocumentFormat::Txt | DocumentFormat::Csv => AutoEscape::None,
            DocumentFormat::Pdf => AutoEscape::None,
        };
        env.set_auto_escape_callback(move |_| escape.clone());
        #[cfg(feature = "render")]
        add_locale_filters(&mut env);
        env
    }
}

/// `money`, `number`, `percent`, `date` and `datetime` ([`super::locale`]):
/// `{{ 12345.5 | money("EUR", "de-DE") }}` → `12.345,50 €`.
#[cfg(feature = "render")]
fn add_locale_filters(env: &mut Environment<'static>) {
    use super::locale;
    use minijinja::Error;

    fn text(filter: &str, value: &Value) -> Result<String, Error> {
        match value.kind() {
            minijinja::value::ValueKind::Number => Ok(value.to_string()),
            minijinja::value::ValueKind::String => {
                Ok(value.as_str().unwrap_or_default().to_owned())
            }
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "{filter} needs a number or a decimal string, not {}",
                    value.kind()
                ),
            )),
        }
    }
    fn failed(filter: &str) -> impl FnOnce(locale::LocaleError) -> Error + '_ {
        move |message| Error::new(ErrorKind::InvalidOperation, format!("{filter}: {message}"))
    }
    env.add_filter(
        "money",
        |value: Value, currency: &str, locale: &str| -> Result<String, Error> {
            locale::money(&text("money", &value)?, currency, locale).map_err(failed("money"))
        },
    );
    env.add_filter(
        "number",
        |value: Value, locale: &str, digits: Option<u8>| -> Result<String, Error> {
            locale::number(&text("number", &value)?, locale, digits).map_err(failed("number"))
        },
    );
    env.add_filter(
        "percent",
        |value: Value, locale: &str, digits: Option<u8>| -> Result<String, Error> {
            locale::percent(&text("percent", &value)?, locale, digits).map_err(failed("percent"))
        },
    );
    env.add_filter(
        "date",
        |value: &str,
         locale: &str,
         style: Option<&str>,
         zone: Option<&str>|
         -> Result<String, Error> {
            locale::date(
                value,
                locale,
                style.unwrap_or("medium"),
                zone.unwrap_or("UTC"),
            )
            .map_err(failed("date"))
        },
    );
    env.add_filter(
        "datetime",
        |value: &str,
         locale: &str,
         zone: Option<&str>,
         style: Option<&str>|
         -> Result<String, Error> {
            locale::datetime(
                value,
                locale,
                zone.unwrap_or("UTC"),
                style.unwrap_or("medium"),
            )
            .map_err(failed("datetime"))
        },
    );
}

impl DocumentRenderer for TextRenderer {
    fn check(&self, template: &str, limits: &RenderLimits) -> Result<(), TemplateError> {
        check_size(template, limits)?;
        let env = self.environment(limits);
        env.template_from_str(template)
            .map(|_| ())
            .map_err(|e| convert(&e, template))
    }

    fn render(
        &self,
        template: &str,
        input: &RenderInput<'_>,
        limits: &RenderLimits,
    ) -> Result<Vec<u8>, TemplateError> {
        check_size(template, limits)?;
        let env = self.environment(limits);
        let compiled = env
            .template_from_str(template)
            .map_err(|e| convert(&e, template))?;
        let context = Value::from_serialize_context(input);
        let mut out = BoundedWriter::new(limits.max_output_bytes);
        match compiled.render_captured_to(context, &mut out) {
            Ok(_) => {}
            Err(_) if out.overflowed => {
                return Err(TemplateError::new(
                    TemplateErrorKind::Limit,
                    format!(
                        "output exceeds the limit of {} bytes",
                        limits.max_output_bytes
                    ),
                ))
            }
            Err(e) => return Err(convert(&e, template)),
        }
        let bytes = out.buf;
        if self.format == DocumentFormat::Json {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                return Err(TemplateError::new(
                    TemplateErrorKind::Runtime,
                    format!("rendered output is not valid JSON: {e}"),
                ));
            }
        }
        Ok(bytes)
    }
}

trait ContextExt {
    fn from_serialize_context(input: &RenderInput<'_>) -> Value;
}

impl ContextExt for Value {
    fn from_serialize_context(input: &RenderInput<'_>) -> Value {
        minijinja::context! {
            data => Value::from(Serde(input.data)),
            bundle => minijinja::context! { seedHash => input.seed_hash },
            configuration => minijinja::context! {
                name => input.configuration_name,
                version => input.configuration_version,
            },
            // Each asset as a data: URI, so that an HTML document stands alone:
            // `<img src="{{ assets['logo.png'] }}">`. Marked safe: base64 needs no escaping,
            // and escaping would break it inside `<style>`.
            assets => input
                .assets
                .iter()
                .map(|a| (a.name.clone(), Value::from_safe_string(a.kind.data_uri(&a.bytes))))
                .collect::<std::collections::BTreeMap<_, _>>(),
        }
    }
}

fn check_size(template: &str, limits: &RenderLimits) -> Result<(), TemplateError> {
    if template.len() > limits.max_template_bytes {
        return Err(TemplateError::new(
            TemplateErrorKind::Limit,
            format!(
                "template exceeds the limit of {} bytes",
                limits.max_template_bytes
            ),
        ));
    }
    Ok(())
}

fn convert(e: &minijinja::Error, source: &str) -> TemplateError {
    let kind = match e.kind() {
        ErrorKind::SyntaxError | ErrorKind::BadEscape | ErrorKind::InvalidDelimiter => {
            TemplateErrorKind::Syntax
        }
        ErrorKind::OutOfFuel => TemplateErrorKind::Limit,
        _ => TemplateErrorKind::Runtime,
    };
    let message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    let column = e.range().map(|range| {
        let start = range.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        source[line_start..start].chars().count() + 1
    });
    TemplateError {
        kind,
        message,
        line: e.line(),
        column,
    }
}

/// Collects output up to a limit; past it, fails the write so that rendering stops.
struct BoundedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl BoundedWriter {
    fn new(limit: usize) -> Self {
        BoundedWriter {
            buf: Vec::new(),
            limit,
            overflowed: false,
        }
    }
}

impl Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("output limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::renderer_for;
    use serde_json::json;

    fn render(
        format: DocumentFormat,
        template: &str,
        data: serde_json::Value,
    ) -> Result<String, TemplateError> {
        let input = RenderInput {
            data: &data,
            seed_hash: "abc",
            configuration_name: "Statements",
            configuration_version: 3,
            pdf_standard: None,
            assets: &[],
            attachment: None,
        };
        renderer_for(format)
            .unwrap()
            .render(template, &input, &RenderLimits::default())
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn templates_see_data_bundle_and_configuration() {
        let out = render(
            DocumentFormat::Txt,
            "{{ data.name }} {{ bundle.seedHash }} {{ configuration.name }} v{{ configuration.version }}",
            json!({"name": "Acme"}),
        )
        .unwrap();
        assert_eq!(out, "Acme abc Statements v3");
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let data = json!({"name": "<b>&</b>"});
        assert_eq!(
            render(DocumentFormat::Html, "{{ data.name }}", data.clone()).unwrap(),
            "&lt;b&gt;&amp;&lt;&#x2f;b&gt;"
        );
        assert_eq!(
            render(DocumentFormat::Md, "{{ data.name }}", data).unwrap(),
            "<b>&</b>"
        );
    }

    #[test]
    fn xml_documents_escape_values() {
        let data = json!({"name": "<b>&\"x\"</b>"});
        let out = render(DocumentFormat::Xml, "<n>{{ data.name }}</n>", data).unwrap();
        assert_eq!(out, "<n>&lt;b&gt;&amp;&quot;x&quot;&lt;&#x2f;b&gt;</n>");
    }

    #[test]
    fn json_documents_escape_values_and_must_be_valid() {
        let out = render(
            DocumentFormat::Json,
            r#"{"name": {{ data.name }}}"#,
            json!({"name": "a\"b"}),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["name"],
            "a\"b"
        );
        let err = render(
            DocumentFormat::Json,
            "not json {{ data.name }}",
            json!({"name": "x"}),
        )
        .unwrap_err();
        assert!(err.message.contains("not valid JSON"));
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = renderer_for(DocumentFormat::Txt)
            .unwrap()
            .check("line one\nHello {{ data.name ", &RenderLimits::default())
            .unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Syntax);
        assert_eq!(err.line, Some(2));
        assert!(err.column.is_some());
        assert!(err.describe().contains("line 2"));
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let err = render(
            DocumentFormat::Txt,
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            json!({}),
        )
        .unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Limit, "{err:?}");
    }

    #[test]
    fn huge_output_is_cut_off() {
        let limits = RenderLimits {
            max_output_bytes: 1000,
            ..RenderLimits::default()
        };
        let input = RenderInput {
            data: &json!({}),
            seed_hash: "",
            configuration_name: "",
            configuration_version: 1,
            pdf_standard: None,
            assets: &[],
            attachment: None,
        };
        let err = renderer_for(DocumentFormat::Txt)
            .unwrap()
            .render(
                "{% for i in range(10000) %}xxxxxxxx{% endfor %}",
                &input,
                &limits,
            )
            .unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Limit);
        assert!(err.message.contains("1000 bytes"));
    }

    #[test]
    fn includes_cannot_reach_files() {
        let err = render(
            DocumentFormat::Txt,
            "{% include '/etc/passwd' %}",
            json!({}),
        )
        .unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Runtime);
    }

    #[cfg(feature = "render")]
    #[test]
    fn locale_filters_format_as_cldr_says() {
        let data = json!({"total": 12345.5, "exact": "0.10", "rate": 0.19, "day": "2026-11-30", "at": "2026-11-30T09:05:00Z"});
        let out = render(
            DocumentFormat::Txt,
            "{{ data.total | money('EUR', 'de-DE') }}|{{ data.exact | money('USD', 'en-US') }}|{{ data.total | number('ja-JP') }}|{{ data.rate | percent('de-DE') }}|{{ data.day | date('en-US', 'long') }}|{{ data.at | datetime('de-DE', 'Europe/Berlin') }}",
            data,
        )
        .unwrap();
        assert_eq!(
            out,
            "12.345,50\u{a0}€|$0.10|12,345.5|19\u{a0}%|November 30, 2026|30.11.2026, 10:05:00 MEZ"
        );
        // In HTML the result is escaped like any other value.
        let out = render(
            DocumentFormat::Html,
            "{{ 5 | money('EUR', 'en-US') }}",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, "€5.00");
        for (template, expected) in [
            ("{{ data | money('EUR', 'de-DE') }}", "needs a number"),
            ("{{ 'abc' | money('EUR', 'de-DE') }}", "is not a number"),
            ("{{ 1 | money('EURO', 'de-DE') }}", "ISO 4217"),
            ("{{ '2026-13-01' | date('de-DE') }}", "not a date"),
            ("{{ 1 | number('de-DE', 300) }}", "number"),
        ] {
            let err = render(DocumentFormat::Txt, template, json!({"x": 1})).unwrap_err();
            assert_eq!(err.kind, TemplateErrorKind::Runtime, "{template}: {err:?}");
            assert!(err.message.contains(expected), "{template}: {err:?}");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let data = json!({"b": 1, "a": [1, 2, {"z": 1, "y": 2}]});
        let t = "{% for k, v in data|items %}{{ k }}={{ v }};{% endfor %}";
        assert_eq!(
            render(DocumentFormat::Txt, t, data.clone()).unwrap(),
            render(DocumentFormat::Txt, t, data).unwrap()
        );
    }
}
