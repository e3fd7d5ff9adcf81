//! Metrics as CloudWatch Embedded Metric Format lines: one JSON object on stdout per
//! measurement, which CloudWatch Logs turns into metrics (namespace `docbundle`) with no agent
//! and no API call on the request path.

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "docbundle";

/// A unit CloudWatch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Milliseconds,
    Seconds,
    Count,
    Bytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
        }
    }
}

/// The EMF line for `metrics` under the `dimensions` (name, value), with extra `properties`
/// (searchable in the logs, not metrics).
pub fn line(
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, Unit)],
    properties: &[(&str, Value)],
    timestamp_ms: i64,
) -> Value {
    let mut object = Map::new();
    for (name, value) in dimensions {
        object.insert((*name).to_owned(), json!(value));
    }
    for (name, value, _) in metrics {
        object.insert((*name).to_owned(), json!(value));
    }
    for (name, value) in properties {
        object.insert((*name).to_owned(), value.clone());
    }
    object.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()})).collect::<Vec<_>>(),
            }],
        }),
    );
    Value::Object(object)
}

/// Writes one EMF line to stdout (where Lambda's logs go).
pub fn emit(
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, Unit)],
    properties: &[(&str, Value)],
) {
    let now = chrono::Utc::now().timestamp_millis();
    println!("{}", line(dimensions, metrics, properties, now));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_embedded_metric_format() {
        let line = line(
            &[("Outcome", "completed")],
            &[
                ("RunDuration", 12.5, Unit::Milliseconds),
                ("Documents", 3.0, Unit::Count),
            ],
            &[("runId", json!("r-1"))],
            1_700_000_000_000,
        );
        assert_eq!(line["Outcome"], "completed");
        assert_eq!(line["RunDuration"], 12.5);
        assert_eq!(line["runId"], "r-1");
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "docbundle");
        assert_eq!(directive["Dimensions"], json!([["Outcome"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "RunDuration", "Unit": "Milliseconds"}, {"Name": "Documents", "Unit": "Count"}])
        );
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }
}
