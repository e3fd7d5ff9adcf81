//! Locale formatting for templates: money, numbers, percentages, dates and date-times, the way
//! CLDR says a reader of that locale writes them (ICU4X with its data compiled into the
//! binary, and the IANA time-zone database of `chrono-tz`). Nothing depends on the host: no
//! system locale, no system time-zone files, no clock; the same build formats the same value
//! the same way, so a replay gives the same bytes.
//!
//! Every function takes the value as text (a JSON number's shortest form, or a decimal string
//! such as `"12345.50"`, which keeps cents exact) and returns the formatted text or a
//! [`LocaleError`], whose message is for the template's author.

use std::str::FromStr;

use chrono::{NaiveDate, TimeZone as _};
use fixed_decimal::{Decimal, SignedRoundingMode, UnsignedRoundingMode};
use icu_datetime::fieldsets::{self, zone};
use icu_datetime::options::Length;
use icu_datetime::FixedCalendarDateTimeFormatter;
use icu_decimal::DecimalFormatter;
use icu_experimental::dimension::currency::formatter::CurrencyFormatter;
use icu_experimental::dimension::currency::CurrencyType;
use icu_experimental::dimension::percent::formatter::PercentFormatter;
use icu_locale_core::extensions::unicode::Value as UnicodeValue;
use icu_locale_core::Locale;
use icu_provider::DataError;
use icu_time::zone::models::AtTime;
use icu_time::{TimeZoneInfo, ZonedDateTime};

/// Longest value text accepted: far more digits than any amount has, few enough that a
/// hostile seed cannot make formatting expensive.
const MAX_VALUE_CHARS: usize = 64;

/// Most fraction digits a template may ask for.
pub const MAX_DIGITS: u8 = 20;

/// Why a value could not be formatted. Values quoted in a message are cut to a readable length.
#[derive(Debug, thiserror::Error)]
pub enum LocaleError {
    /// The value is empty, or longer than any amount is.
    #[error("`{value}` is not a number (1 to {MAX_VALUE_CHARS} characters)")]
    NumberLength { value: String },
    /// The value is not a decimal number.
    #[error("`{value}` is not a number")]
    NotANumber { value: String },
    /// More fraction digits than [`MAX_DIGITS`] asked for.
    #[error("digits must be 0 to {MAX_DIGITS}, not {digits}")]
    Digits { digits: u8 },
    /// The locale is not a BCP 47 locale.
    #[error("`{value}` is not a locale such as de-DE")]
    Locale { value: String },
    /// The currency is not an ISO 4217 code.
    #[error("`{value}` is not an ISO 4217 currency code such as EUR")]
    Currency { value: String },
    /// The style is not one of `short`, `medium`, `long`, `full`.
    #[error("style must be short, medium, long or full, not `{value}`")]
    Style { value: String },
    /// The value is neither a date nor an RFC 3339 date-time.
    #[error(
        "`{value}` is not a date (2026-11-30) or an RFC 3339 date-time (2026-11-30T09:05:00Z)"
    )]
    NotADate { value: String },
    /// The time-zone name is longer than any IANA name.
    #[error("the time zone name is too long")]
    ZoneTooLong,
    /// The time zone is not in the IANA database.
    #[error("`{value}` is not an IANA time zone such as Europe/Berlin or UTC")]
    Zone { value: String },
    /// No currency formatting data for the locale.
    #[error("cannot format `{currency}` for this locale: {error}")]
    CurrencyData { currency: String, error: DataError },
    /// No number formatting data for the locale.
    #[error("cannot format numbers for this locale: {0}")]
    NumberData(DataError),
    /// No percentage formatting data for the locale.
    #[error("cannot format percentages for this locale: {0}")]
    PercentData(DataError),
    /// No date formatting data for the locale.
    #[error("cannot format dates for this locale: {0}")]
    DateData(icu_datetime::DateTimeFormatterLoadError),
}

/// `12345.5`, `EUR`, `de-DE` → `12.345,50 €`: the currency's own number of decimals (two for
/// EUR, none for JPY), halves rounded away from zero (as `Intl.NumberFormat`).
pub fn money(value: &str, currency: &str, locale: &str) -> Result<String, LocaleError> {
    let amount = decimal(value)?;
    let locale = parse_locale(locale)?;
    let code = currency_code(currency)?;
    let formatter = CurrencyFormatter::try_new_symbol((&locale).into(), code, Default::default())
        .map_err(|error| LocaleError::CurrencyData {
        currency: currency.to_owned(),
        error,
    })?;
    let text = formatter.format_fixed_decimal(&amount).to_string();
    Ok(text)
}

/// `1234567.891`, `en-US` → `1,234,567.891`. Without `digits`, at most three fraction digits
/// (as `Intl.NumberFormat`); with it, exactly that many.
pub fn number(value: &str, locale: &str, digits: Option<u8>) -> Result<String, LocaleError> {
    let mut amount = decimal(value)?;
    fraction_digits(&mut amount, digits, 3)?;
    let locale = parse_locale(locale)?;
    let formatter = DecimalFormatter::try_new((&locale).into(), Default::default())
        .map_err(LocaleError::NumberData)?;
    Ok(formatter.format(&amount).to_string())
}

/// A fraction as a percentage: `0.125`, `de-DE` → `13 %`; with `digits` 1 → `12,5 %`.
pub fn percent(value: &str, locale: &str, digits: Option<u8>) -> Result<String, LocaleError> {
    let mut amount = decimal(value)?;
    amount.multiply_pow10(2);
    amount.trim_start();
    fraction_digits(&mut amount, digits, 0)?;
    let locale = parse_locale(locale)?;
    let formatter = PercentFormatter::try_new((&locale).into(), Default::default())
        .map_err(LocaleError::PercentData)?;
    Ok(formatter.format(&amount).to_string())
}

/// A calendar date, `2026-11-30` (or the date of an RFC 3339 instant in `time_zone`), in the
/// locale's `short`, `medium`, `long` or `full` style: `de-DE` long → `30. November 2026`.
pub fn date(
    value: &str,
    locale: &str,
    style: &str,
    time_zone: &str,
) -> Result<String, LocaleError> {
    let local = match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(day) if value.len() == 10 => day,
        _ => instant(value, time_zone)?.date_naive(),
    };
    let locale = parse_locale(locale)?;
    let date = icu_calendar::Date::<icu_calendar::Gregorian>::from(local);
    let length = length(style)?;
    let text = if style == "full" {
        FixedCalendarDateTimeFormatter::try_new(
            (&locale).into(),
            fieldsets::YMDE::for_length(length),
        )
        .map_err(LocaleError::DateData)?
        .format(&date)
        .to_string()
    } else {
        FixedCalendarDateTimeFormatter::try_new(
            (&locale).into(),
            fieldsets::YMD::for_length(length),
        )
        .map_err(LocaleError::DateData)?
        .format(&date)
        .to_string()
    };
    Ok(text)
}

/// An RFC 3339 instant shown in `time_zone` (an IANA name such as `Europe/Berlin`, or `UTC`),
/// with the zone's name: `2026-11-30T09:05:00Z`, `de-DE`, `Europe/Berlin` medium →
/// `30.11.2026, 10:05:00 MEZ`.
pub fn datetime(
    value: &str,
    locale: &str,
    time_zone: &str,
    style: &str,
) -> Result<String, LocaleError> {
    let at = instant(value, time_zone)?;
    let locale = parse_locale(locale)?;
    let zoned = ZonedDateTime::<icu_calendar::Gregorian, TimeZoneInfo<AtTime>>::from(&at);
    let length = length(style)?;
    let text = if style == "full" {
        FixedCalendarDateTimeFormatter::try_new(
            (&locale).into(),
            fieldsets::YMDE::for_length(length)
                .with_time(precision(style))
                .with_zone(zone::SpecificLong),
        )
        .map_err(LocaleError::DateData)?
        .format(&zoned)
        .to_string()
    } else {
        FixedCalendarDateTimeFormatter::try_new(
            (&locale).into(),
            fieldsets::YMD::for_length(length)
                .with_time(precision(style))
                .with_zone(zone::SpecificShort),
        )
        .map_err(LocaleError::DateData)?
        .format(&zoned)
        .to_string()
    };
    Ok(text)
}

/// Minutes in the short style, seconds otherwise (as `Intl.DateTimeFormat`'s styles).
fn precision(style: &str) -> icu_datetime::options::TimePrecision {
    if style == "short" {
        icu_datetime::options::TimePrecision::Minute
    } else {
        icu_datetime::options::TimePrecision::Second
    }
}

/// The value as a decimal: a plain or signed decimal number, optionally with an exponent.
fn decimal(value: &str) -> Result<Decimal, LocaleError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_VALUE_CHARS {
        return Err(LocaleError::NumberLength {
            value: shorten(value),
        });
    }
    Decimal::from_str(value).map_err(|_| LocaleError::NotANumber {
        value: shorten(value),
    })
}

/// Rounds to `digits` fraction digits (halves away from zero) and pads to them; without `digits`, at
/// most `default_max` and no padding.
fn fraction_digits(
    amount: &mut Decimal,
    digits: Option<u8>,
    default_max: u8,
) -> Result<(), LocaleError> {
    match digits {
        Some(d) if d > MAX_DIGITS => Err(LocaleError::Digits { digits: d }),
        Some(d) => {
            let position = -i16::from(d);
            amount.round_with_mode(
                position,
                SignedRoundingMode::Unsigned(UnsignedRoundingMode::HalfExpand),
            );
            amount.pad_end(position);
            Ok(())
        }
        None => {
            let position = -i16::from(default_max);
            amount.round_with_mode(
                position,
                SignedRoundingMode::Unsigned(UnsignedRoundingMode::HalfExpand),
            );
            amount.trim_end();
            Ok(())
        }
    }
}

fn parse_locale(raw: &str) -> Result<Locale, LocaleError> {
    let invalid = || LocaleError::Locale {
        value: shorten(raw),
    };
    if raw.is_empty() || raw.len() > 64 {
        return Err(invalid());
    }
    Locale::try_from_str(raw).map_err(|_| invalid())
}

fn currency_code(raw: &str) -> Result<CurrencyType, LocaleError> {
    let invalid = || LocaleError::Currency {
        value: shorten(raw),
    };
    if raw.len() != 3 || !raw.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(invalid());
    }
    let value = UnicodeValue::try_from_str(&raw.to_ascii_lowercase()).map_err(|_| invalid())?;
    CurrencyType::try_from(&value).map_err(|_| invalid())
}

fn length(style: &str) -> Result<Length, LocaleError> {
    match style {
        "short" => Ok(Length::Short),
        "medium" => Ok(Length::Medium),
        "long" | "full" => Ok(Length::Long),
        other => Err(LocaleError::Style {
            value: shorten(other),
        }),
    }
}

/// An RFC 3339 instant (`2026-11-30T09:05:00Z`, `…+01:00`) in `time_zone`.
fn instant(value: &str, time_zone: &str) -> Result<chrono::DateTime<chrono_tz::Tz>, LocaleError> {
    let zone = parse_zone(time_zone)?;
    let at = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| LocaleError::NotADate {
        value: shorten(value),
    })?;
    Ok(zone.from_utc_datetime(&at.naive_utc()))
}

fn parse_zone(raw: &str) -> Result<chrono_tz::Tz, LocaleError> {
    if raw.len() > 64 {
        return Err(LocaleError::ZoneTooLong);
    }
    raw.parse::<chrono_tz::Tz>().map_err(|_| LocaleError::Zone {
        value: shorten(raw),
    })
}

/// A value quoted in a message, cut to a readable length.
fn shorten(value: &str) -> String {
    let mut out: String = value.chars().take(40).collect();
    if out.len() < value.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // What CLDR says, as browsers print it (`Intl.NumberFormat` / `Intl.DateTimeFormat`).
    // CLDR separates with no-break spaces: U+00A0, and U+202F (narrow) in French and times.

    #[test]
    fn money_as_each_locale_writes_it() {
        assert_eq!(
            money("12345.5", "EUR", "de-DE").unwrap(),
            "12.345,50\u{a0}€"
        );
        assert_eq!(money("12345.5", "USD", "en-US").unwrap(), "$12,345.50");
        assert_eq!(money("12345.5", "JPY", "ja-JP").unwrap(), "￥12,346");
        assert_eq!(money("-3.456", "EUR", "en-US").unwrap(), "-€3.46");
        assert_eq!(money("0.125", "EUR", "de-DE").unwrap(), "0,13\u{a0}€");
        assert_eq!(money("99", "usd", "de-DE").unwrap(), "99,00\u{a0}$");
    }

    #[test]
    fn numbers_and_percentages() {
        assert_eq!(
            number("1234567.891", "en-US", None).unwrap(),
            "1,234,567.891"
        );
        assert_eq!(
            number("1234567.891", "de-DE", None).unwrap(),
            "1.234.567,891"
        );
        assert_eq!(number("0.30000000000000004", "en-US", None).unwrap(), "0.3");
        assert_eq!(number("2", "en-US", Some(2)).unwrap(), "2.00");
        assert_eq!(number("1e3", "en-US", None).unwrap(), "1,000");
        assert_eq!(percent("0.125", "en-US", None).unwrap(), "13%");
        assert_eq!(percent("0.125", "de-DE", Some(1)).unwrap(), "12,5\u{a0}%");
        assert_eq!(percent("0.19", "ja-JP", None).unwrap(), "19%");
    }

    #[test]
    fn dates_and_times_in_a_zone() {
        assert_eq!(
            date("2026-11-30", "de-DE", "long", "UTC").unwrap(),
            "30. November 2026"
        );
        assert_eq!(
            date("2026-11-30", "en-US", "long", "UTC").unwrap(),
            "November 30, 2026"
        );
        assert_eq!(
            date("2026-11-30", "ja-JP", "long", "UTC").unwrap(),
            "2026年11月30日"
        );
        assert_eq!(
            date("2026-11-30", "en-US", "short", "UTC").unwrap(),
            "11/30/26"
        );
        assert_eq!(
            date("2026-11-30", "de-DE", "full", "UTC").unwrap(),
            "Montag, 30. November 2026"
        );
        // The day of an instant depends on the zone.
        assert_eq!(
            date("2026-11-30T23:30:00Z", "en-US", "medium", "Asia/Tokyo").unwrap(),
            "Dec 1, 2026"
        );
        assert_eq!(
            datetime("2026-11-30T09:05:00Z", "de-DE", "Europe/Berlin", "medium").unwrap(),
            "30.11.2026, 10:05:00 MEZ"
        );
        // Summer time is the zone's rule, not a fixed offset.
        assert_eq!(
            datetime("2026-07-01T09:05:00Z", "de-DE", "Europe/Berlin", "medium").unwrap(),
            "01.07.2026, 11:05:00 MESZ"
        );
        assert_eq!(
            datetime("2026-11-30T09:05:00Z", "en-US", "America/New_York", "short").unwrap(),
            "11/30/26, 4:05\u{202f}AM EST"
        );
        assert_eq!(
            datetime("2026-11-30T09:05:00Z", "ja-JP", "Asia/Tokyo", "medium").unwrap(),
            "2026/11/30 18:05:00 JST"
        );
    }

    /// The README's table, row by row.
    #[test]
    fn the_readme_table() {
        type Format = fn(&str) -> Result<String, LocaleError>;
        let rows: [(&str, Format); 5] = [
            ("money", |l| money("12345.5", "EUR", l)),
            ("number", |l| number("1234.5", l, Some(2))),
            ("percent", |l| percent("0.19", l, None)),
            ("date", |l| date("2026-11-30", l, "long", "UTC")),
            ("datetime", |l| {
                datetime("2026-11-30T09:05:00Z", l, "Europe/Berlin", "medium")
            }),
        ];
        let expected = [
            ["12.345,50 €", "€12,345.50", "€12,345.50"],
            ["1.234,50", "1,234.50", "1,234.50"],
            ["19 %", "19%", "19%"],
            ["30. November 2026", "November 30, 2026", "2026年11月30日"],
            [
                "30.11.2026, 10:05:00 MEZ",
                "Nov 30, 2026, 10:05:00 AM GMT+1",
                "2026/11/30 10:05:00 GMT+1",
            ],
        ];
        for ((what, format), expected) in rows.iter().zip(expected) {
            for (locale, expected) in ["de-DE", "en-US", "ja-JP"].iter().zip(expected) {
                let got = format(locale).unwrap().replace(['\u{a0}', '\u{202f}'], " ");
                assert_eq!(got, expected, "{what} {locale}");
            }
        }
    }

    #[test]
    fn hostile_values_are_messages() {
        for (value, expected) in [
            ("", "is not a number"),
            ("12,5", "is not a number"),
            ("NaN", "is not a number"),
            (&"9".repeat(10_000) as &str, "1 to 64 characters"),
            ("1e999999999", "is not a number"),
        ] {
            let err = money(value, "EUR", "de-DE").unwrap_err().to_string();
            assert!(err.contains(expected), "{value:.20}: {err}");
        }
        assert!(money("1", "EURO", "de-DE")
            .unwrap_err()
            .to_string()
            .contains("ISO 4217"));
        assert!(money("1", "E1R", "de-DE")
            .unwrap_err()
            .to_string()
            .contains("ISO 4217"));
        assert!(money("1", "EUR", "not a locale!")
            .unwrap_err()
            .to_string()
            .contains("locale"));
        assert!(number("1", "en", Some(200))
            .unwrap_err()
            .to_string()
            .contains("digits"));
        assert!(date("2026-02-30", "de-DE", "long", "UTC")
            .unwrap_err()
            .to_string()
            .contains("not a date"));
        assert!(date("+275760-09-13", "de-DE", "long", "UTC").is_err());
        assert!(date("2026-11-30", "de-DE", "huge", "UTC")
            .unwrap_err()
            .to_string()
            .contains("style"));
        assert!(
            datetime("2026-11-30T09:05:00Z", "de-DE", "Mars/Olympus", "medium")
                .unwrap_err()
                .to_string()
                .contains("IANA")
        );
        // A locale CLDR does not know falls back to its root data rather than failing.
        assert!(number("1234.5", "xx-XX", None).is_ok());
    }
}
