//! What an e-invoice costs a render, without the rendering itself: checking the XML against
//! the EN 16931 profile's XSD and the official Schematron (invoices of 4, 30 and 200 lines,
//! all valid, generated from the sample configuration), and writing the Factur-X XMP into a
//! rendered PDF/A (read the packet, add the properties, append the update) — the 5-page sample
//! invoice of the signature bench. Then the same for XRechnung 3.0 (the CII D16B XSD, CEN's EN
//! 16931 rules and KoSIT's): the sample (3 lines) and a generated 30-line invoice. Median and
//! p99 over repeated runs on one thread; the rules are compiled once per process (the first
//! run, reported apart). Target: ≤ 10 ms per invoice.
//!
//!   cargo bench -p docbundle-einvoice --bench validate

use std::time::{Duration, Instant};

use docbundle_einvoice::{validate, xmp, Limits, Profile};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{name:<36} median {:>8.3} ms   p99 {:>8.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

fn timed(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

fn main() {
    let started = Instant::now();
    docbundle_einvoice::rules(Profile::En16931).expect("the rules load");
    println!(
        "{:<36} {:>8.3} ms (once per process)",
        "load the EN 16931 rules",
        started.elapsed().as_secs_f64() * 1e3
    );
    for (name, xml, runs) in [
        (
            "validate, 4 lines",
            include_str!("invoice-4-lines.xml"),
            200,
        ),
        (
            "validate, 30 lines",
            include_str!("invoice-30-lines.xml"),
            100,
        ),
        (
            "validate, 200 lines",
            include_str!("invoice-200-lines.xml"),
            20,
        ),
    ] {
        let limits = Limits::default();
        validate(Profile::En16931, xml, &limits).expect("a valid invoice");
        report(
            name,
            timed(runs, || {
                validate(Profile::En16931, xml, &limits).unwrap();
            }),
        );
    }
    let started = Instant::now();
    docbundle_einvoice::rules(Profile::XRechnung).expect("the rules load");
    println!(
        "{:<36} {:>8.3} ms (once per process)",
        "load the XRechnung rules",
        started.elapsed().as_secs_f64() * 1e3
    );
    for (name, xml, runs) in [
        (
            "XRechnung, the sample (3 lines)",
            include_str!("xrechnung-sample.xml"),
            200,
        ),
        (
            "XRechnung, 30 lines",
            include_str!("xrechnung-30-lines.xml"),
            100,
        ),
    ] {
        let limits = Limits::default();
        let warnings = validate(Profile::XRechnung, xml, &limits).expect("a valid invoice");
        assert!(warnings.is_empty(), "{warnings:?}");
        report(
            name,
            timed(runs, || {
                validate(Profile::XRechnung, xml, &limits).unwrap();
            }),
        );
    }
    let pdf = include_bytes!("../../pades/benches/invoice-5-pages.pdf");
    report(
        "XMP update, 5-page PDF/A",
        timed(200, || {
            let packet = docbundle_pades::metadata::read(pdf).unwrap().unwrap();
            let packet = xmp::with_factur_x(&packet, Profile::En16931).unwrap();
            docbundle_pades::metadata::replace(pdf, &packet).unwrap();
        }),
    );
}
