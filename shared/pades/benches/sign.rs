//! Our own cost of a PAdES signature, without the Vault and TSA round trips (those are network
//! waits measured end to end, see docs/performance.md): for the sample 5-page invoice (the
//! `events/samples/invoice-configuration.json` render of 160 lines, 186 KB), the median and
//! p99 of `prepare` (read the PDF, append the update, hash the byte ranges, build the signed
//! attributes), `finish` (encode the CMS, fill the placeholder) and, for B-LT, `append_dss`.
//! One thread, so the time is CPU time. Target: ≤ 5 ms per signature.
//!
//!   cargo bench -p docbundle-pades --bench sign

use std::time::{Duration, Instant};

use docbundle_pades::{dss, prepare, Details, DEFAULT_RESERVE};

const RUNS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{name:<28} median {:>8.3} ms   p99 {:>8.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let pdf = include_bytes!("invoice-5-pages.pdf");
    let chain = vec![include_bytes!("../tests/fixtures/signer.der").to_vec()];
    // A DER ECDSA P-256 signature's size (what Vault returns), its bytes irrelevant here.
    let signature = {
        let mut der = vec![0x30, 0x44, 0x02, 0x20];
        der.extend([0x11; 32]);
        der.extend([0x02, 0x20]);
        der.extend([0x22; 32]);
        der
    };
    let details = Details {
        reason: Some("Invoice issued".into()),
        location: Some("Berlin".into()),
        contact_info: None,
        signing_time: Some(chrono::Utc::now()),
    };
    let (mut prepares, mut finishes, mut dsses, mut totals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let prepared = prepare(pdf, &chain, &details, DEFAULT_RESERVE).expect("prepare");
        let _digest = prepared.digest();
        let t1 = Instant::now();
        let signed = prepared.finish(&signature, None).expect("finish");
        let t2 = Instant::now();
        let with_dss = dss::append_dss(&signed, &chain, &[]).expect("dss");
        let t3 = Instant::now();
        assert!(with_dss.len() > signed.len());
        prepares.push(t1 - t0);
        finishes.push(t2 - t1);
        dsses.push(t3 - t2);
        totals.push(t2 - t0);
    }
    println!(
        "PAdES signature of a {} KB, 5-page invoice ({RUNS} runs):",
        pdf.len() / 1024
    );
    report("prepare", prepares);
    report("finish", finishes);
    report("B-B/B-T total (ours)", totals);
    report("B-LT: + append_dss", dsses);
}
