//! Validates XML files as the service does; one JSON line per file:
//! `{"file", "valid", "rules": [failed rule ids], "findings", "warnings", "micros"}`.
//!
//! `cargo run --release -p docbundle-einvoice --example validate -- "EN 16931" FILE...`

use docbundle_einvoice::{validate, Invalid, Limits, Profile};

fn main() {
    let mut args = std::env::args().skip(1);
    let profile = args
        .next()
        .and_then(|p| Profile::named(&p))
        .expect("a profile: MINIMUM, BASIC WL, BASIC, EN 16931, EXTENDED or XRECHNUNG 3.0");
    for file in args {
        let Ok(xml) = std::fs::read(&file).map(String::from_utf8) else {
            println!(
                "{}",
                serde_json::json!({"file": file, "valid": false, "unreadable": "cannot be read"})
            );
            continue;
        };
        let Ok(xml) = xml else {
            println!(
                "{}",
                serde_json::json!({"file": file, "valid": false, "unreadable": "not UTF-8"})
            );
            continue;
        };
        let started = std::time::Instant::now();
        let mut limits = Limits::default();
        if let Some(fuel) = std::env::var("EINVOICE_FUEL")
            .ok()
            .and_then(|f| f.parse().ok())
        {
            limits.fuel = fuel;
        }
        let result = validate(profile, &xml, &limits);
        let micros = started.elapsed().as_micros();
        let (rules, findings, warnings, unreadable) = match &result {
            Ok(w) => (Vec::new(), Vec::new(), w.clone(), None),
            Err(e @ Invalid::Rules(f)) => (e.rule_ids(), f.clone(), Vec::new(), None),
            Err(Invalid::Unreadable(m)) => (Vec::new(), Vec::new(), Vec::new(), Some(m.clone())),
        };
        println!(
            "{}",
            serde_json::json!({
                "file": file,
                "valid": result.is_ok(),
                "rules": rules,
                "findings": findings,
                "warnings": warnings,
                "unreadable": unreadable,
                "micros": micros,
            })
        );
    }
}
