//! `docbundle check-einvoice`: XML files checked as e-invoices of a profile, offline, by the
//! very check a save and a run apply (the profile's XSD and the official Schematron rules), so
//! the rule ids are the service's.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use docbundle::domain::einvoice::EinvoiceProfile;

use crate::Exit;

/// Largest XML read.
const MAX_XML_BYTES: u64 = 8 << 20;

#[derive(Args)]
pub struct CheckArgs {
    /// The profile: a Factur-X level (MINIMUM, "BASIC WL", BASIC, "EN 16931", EXTENDED) or
    /// XRECHNUNG (XRechnung 3.0: CEN's EN 16931 rules and KoSIT's BR-DE-* rules).
    #[arg(long, default_value = "EN 16931")]
    profile: String,
    /// One JSON object per file (`{"file", "valid", "rules", "message"}`) instead of text.
    #[arg(long)]
    json: bool,
    /// The XML files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let profile = match args.profile.to_ascii_uppercase().as_str() {
        "XRECHNUNG" | "XRECHNUNG 3.0" => Some(EinvoiceProfile::XRechnung30),
        _ => EinvoiceProfile::parse(&args.profile),
    };
    let Some(profile) = profile else {
        bail!(
            "unknown profile `{}`: one of MINIMUM, BASIC WL, BASIC, EN 16931, EXTENDED, XRECHNUNG",
            args.profile
        );
    };
    let mut invalid = 0;
    for file in &args.files {
        let bytes = crate::folder::read_capped(file, MAX_XML_BYTES, "the XML limit")
            .with_context(|| file.display().to_string())?;
        let result = docbundle::render::einvoice::check_xml(profile, &bytes);
        if result.is_err() {
            invalid += 1;
        }
        if args.json {
            let (rules, message) = match &result {
                Ok(()) => (Vec::new(), None),
                Err(e) => (e.rules.clone(), Some(e.message.clone())),
            };
            println!(
                "{}",
                serde_json::json!({
                    "file": file.display().to_string(),
                    "valid": result.is_ok(),
                    "rules": rules,
                    "message": message,
                })
            );
        } else {
            match &result {
                Ok(()) => println!("{}: a valid {} invoice", file.display(), profile.label()),
                Err(e) => println!("{}: {}", file.display(), e.message),
            }
        }
    }
    if invalid > 0 {
        return Err(Exit {
            code: 1,
            message: format!("{invalid} of {} file(s) are not valid", args.files.len()),
        }
        .into());
    }
    Ok(())
}
