//! Retention: how long a run's artefacts and its seed are kept, per configuration version.
//!
//! A period is `"forever"` or an ISO 8601 duration of whole numbers (`P10Y`, `P30D`,
//! `P1Y6M`, `PT1M`): no sign, no fraction, no week mixed with anything but itself being a
//! problem (`P1W2D` is nine days). It is parsed here, bounded by the platform's limits and
//! [`HARD_MAX`], before the database ever sees it: PostgreSQL itself would take `P-1D` and
//! fail on `now() + 'P1000000Y'`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// Seconds in an average Gregorian month (365.2425 days / 12): how periods with months are
/// compared with the limits. The run's expiry itself is calendar arithmetic (PostgreSQL's).
const MONTH_SECONDS: u64 = 2_629_746;
/// No period is longer than a century, whatever the settings say.
pub const HARD_MAX_SECONDS: u64 = 100 * 12 * MONTH_SECONDS;
/// The text of [`HARD_MAX_SECONDS`].
pub const HARD_MAX: &str = "P100Y";
/// Most digits of one component: keeps every sum far inside `u64`.
const MAX_DIGITS: usize = 9;

/// How long something is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Period {
    Forever,
    /// An ISO 8601 duration, as given (upper case, checked) and its length.
    Duration {
        text: String,
        months: u64,
        seconds: u64,
    },
}

impl Period {
    /// Parses `"forever"` or an ISO 8601 duration of whole, unsigned components.
    pub fn parse(text: &str) -> Result<Period, String> {
        if text == "forever" {
            return Ok(Period::Forever);
        }
        let shape = "must be \"forever\" or an ISO 8601 duration of whole numbers such as P10Y, P30D, P1Y6M or PT1M";
        let rest = text.strip_prefix('P').ok_or_else(|| shape.to_owned())?;
        let (date, time) = match rest.split_once('T') {
            Some((date, time)) if !time.is_empty() => (date, Some(time)),
            Some(_) => return Err(shape.to_owned()),
            None => (rest, None),
        };
        let mut months = 0u64;
        let mut seconds = 0u64;
        let mut any = false;
        let mut scan = |part: &str, units: &[(char, u64, bool)]| -> Result<(), String> {
            let mut next_unit = 0;
            let mut digits = String::new();
            for c in part.chars() {
                if c.is_ascii_digit() {
                    digits.push(c);
                    if digits.len() > MAX_DIGITS {
                        return Err(format!("has a component longer than {MAX_DIGITS} digits"));
                    }
                    continue;
                }
                let Some(offset) = units[next_unit..].iter().position(|(u, _, _)| *u == c) else {
                    return Err(shape.to_owned());
                };
                if digits.is_empty() {
                    return Err(shape.to_owned());
                }
                let (_, factor, in_months) = units[next_unit + offset];
                let n: u64 = digits.parse().map_err(|_| shape.to_owned())?;
                if in_months {
                    months += n * factor;
                } else {
                    seconds += n * factor;
                }
                digits.clear();
                next_unit += offset + 1;
                any = true;
            }
            if digits.is_empty() {
                Ok(())
            } else {
                Err(shape.to_owned())
            }
        };
        scan(
            date,
            &[
                ('Y', 12, true),
                ('M', 1, true),
                ('W', 7 * 86_400, false),
                ('D', 86_400, false),
            ],
        )?;
        if let Some(time) = time {
            scan(
                time,
                &[('H', 3_600, false), ('M', 60, false), ('S', 1, false)],
            )?;
        }
        if !any {
            return Err(shape.to_owned());
        }
        Ok(Period::Duration {
            text: text.to_owned(),
            months,
            seconds,
        })
    }

    /// Its length in seconds (months at their average length); `None` for ever.
    pub fn approx_seconds(&self) -> Option<u64> {
        match self {
            Period::Forever => None,
            Period::Duration {
                months, seconds, ..
            } => Some(
                months
                    .saturating_mul(MONTH_SECONDS)
                    .saturating_add(*seconds),
            ),
        }
    }

    /// The duration the database adds to a run's end (`None` for ever).
    pub fn as_interval(&self) -> Option<&str> {
        match self {
            Period::Forever => None,
            Period::Duration { text, .. } => Some(text),
        }
    }

    /// Reads back what [`Period::as_interval`] stored.
    pub fn from_stored(stored: Option<&str>) -> Period {
        match stored {
            None => Period::Forever,
            Some(text) => Period::parse(text).unwrap_or(Period::Duration {
                text: text.to_owned(),
                months: 0,
                seconds: 0,
            }),
        }
    }

    /// Whether it is no longer than `other`.
    fn at_most(&self, other: &Period) -> bool {
        match (self.approx_seconds(), other.approx_seconds()) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a <= b,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Forever => f.write_str("forever"),
            Period::Duration { text, .. } => f.write_str(text),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The platform's bounds and defaults (settings `RETENTION_MIN`, `RETENTION_MAX`,
/// `RETENTION_DEFAULT_ARTEFACTS`, `RETENTION_DEFAULT_SEEDS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionLimits {
    /// The shortest period a configuration may ask for.
    pub min: Period,
    /// The longest; `forever` allows keeping for ever (durations still end at [`HARD_MAX`]).
    pub max: Period,
    /// What a configuration that says nothing keeps.
    pub default: Retention,
}

impl Default for RetentionLimits {
    fn default() -> Self {
        RetentionLimits {
            min: Period::parse("P1D").expect("a valid period"),
            max: Period::Forever,
            default: Retention {
                artefacts: Period::Forever,
                seeds: Period::Forever,
            },
        }
    }
}

impl RetentionLimits {
    /// Any well-formed period (a second to [`HARD_MAX`], or for ever): for checks of a
    /// configuration that keeps nothing (a local render).
    pub fn any() -> Self {
        RetentionLimits {
            min: Period::parse("PT1S").expect("a valid period"),
            ..RetentionLimits::default()
        }
    }

    /// `period` if the limits allow it, else why not.
    pub fn check(&self, period: Period) -> Result<Period, String> {
        if let Some(seconds) = period.approx_seconds() {
            if seconds > HARD_MAX_SECONDS {
                return Err(format!("must be at most {HARD_MAX}"));
            }
        }
        if !self.min.at_most(&period) {
            return Err(format!("must be at least {}", self.min));
        }
        if !period.at_most(&self.max) {
            return Err(format!("must be at most {}", self.max));
        }
        Ok(period)
    }

    /// The retention a configuration asks for, each missing part the default; every problem
    /// is added to `errors` under `retention.<part>`.
    pub fn resolve(&self, body: Option<RetentionBody>, errors: &mut Vec<FieldError>) -> Retention {
        let body = body.unwrap_or_default();
        let mut part = |name: &str, given: Option<String>, default: &Period| match given {
            None => default.clone(),
            Some(text) => match Period::parse(&text).and_then(|p| self.check(p)) {
                Ok(period) => period,
                Err(problem) => {
                    errors.push(FieldError::new(format!("retention.{name}"), problem));
                    default.clone()
                }
            },
        };
        Retention {
            artefacts: part("artefacts", body.artefacts, &self.default.artefacts),
            seeds: part("seeds", body.seeds, &self.default.seeds),
        }
    }
}

/// What a configuration version keeps, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// How long a completed run's artefacts are kept after it completed: then they are
    /// deleted and the run is `expired` (its manifest and log entry stay).
    #[schema(value_type = String, example = "P10Y")]
    pub artefacts: Period,
    /// How long a run's seed is kept after the run ended (deleted once no run still
    /// keeps it).
    #[schema(value_type = String, example = "P30D")]
    pub seeds: Period,
}

/// `retention` in a configuration's body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionBody {
    /// `"forever"` or an ISO 8601 duration (`P10Y`, `P30D`, `PT1H`) within the platform's
    /// limits; the platform's default when absent.
    #[schema(max_length = 40, example = "P10Y")]
    pub artefacts: Option<String>,
    /// The same for the run's seed.
    #[schema(max_length = 40, example = "P30D")]
    pub seeds: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> u64 {
        Period::parse(text).unwrap().approx_seconds().unwrap()
    }

    #[test]
    fn iso_durations_of_whole_numbers_parse() {
        assert_eq!(seconds("PT1M"), 60);
        assert_eq!(seconds("P30D"), 30 * 86_400);
        assert_eq!(seconds("P1W2D"), 9 * 86_400);
        assert_eq!(seconds("P1DT1H1M1S"), 86_400 + 3_661);
        assert_eq!(seconds("P1Y"), 12 * MONTH_SECONDS);
        assert_eq!(seconds("P1Y6M"), 18 * MONTH_SECONDS);
        assert_eq!(Period::parse("forever"), Ok(Period::Forever));
        assert_eq!(Period::parse("P10Y").unwrap().to_string(), "P10Y");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "P",
            "PT",
            "P1DT",
            "P-1D",
            "-P1D",
            "P+1D",
            "P1.5D",
            "P1,5D",
            "1 day",
            "p1d",
            "P1d",
            "P1D ",
            " P1D",
            "PT1Y",
            "P1H",
            "P1M1Y",
            "P1D1D",
            "PD",
            "P1",
            "P1DT1",
            "P9999999999Y",
            "Forever",
            "P\u{0}1D",
            "P１D",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_limits_bound_every_period() {
        let limits = RetentionLimits::default();
        assert!(limits.check(Period::parse("P1D").unwrap()).is_ok());
        assert_eq!(
            limits.check(Period::parse("PT1M").unwrap()),
            Err("must be at least P1D".to_owned())
        );
        assert_eq!(
            limits.check(Period::parse("P1000000Y").unwrap()),
            Err("must be at most P100Y".to_owned())
        );
        assert!(limits.check(Period::Forever).is_ok());
        let capped = RetentionLimits {
            max: Period::parse("P30Y").unwrap(),
            ..RetentionLimits::default()
        };
        assert_eq!(
            capped.check(Period::Forever),
            Err("must be at most P30Y".to_owned())
        );
        assert!(capped.check(Period::parse("P10Y").unwrap()).is_ok());
    }

    #[test]
    fn each_refused_part_names_its_field_and_missing_parts_take_the_default() {
        let mut errors = Vec::new();
        let limits = RetentionLimits::default();
        let kept = limits.resolve(
            Some(RetentionBody {
                artefacts: Some("P-1D".into()),
                seeds: None,
            }),
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "retention.artefacts");
        assert_eq!(kept.seeds, Period::Forever);
    }
}
