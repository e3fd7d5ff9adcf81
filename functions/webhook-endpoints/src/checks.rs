//! Checks of an endpoint's fields as a create or an update sends them: the URL (its form and
//! where its host resolves), the events and the description. Each failure is collected as a
//! field error, so one answer names them all.

use docbundle::domain::webhooks::{self, EndpointEvent, MAX_DESCRIPTION};
use docbundle::error::{ApiError, FieldError};
use docbundle::AppState;

/// A clean URL, or the field error saying why not.
pub(crate) async fn checked_url(
    state: &AppState,
    raw: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let insecure = state.settings.webhook_allow_insecure;
    match webhooks::check_url(raw, insecure) {
        Ok(url) => match docbundle::infra::outbound::vet_host(&url, insecure).await {
            Ok(()) => Some(url.to_string()),
            Err(why) => {
                errors.push(FieldError::new("url", why));
                None
            }
        },
        Err(why) => {
            errors.push(FieldError::new("url", why));
            None
        }
    }
}

pub(crate) fn checked_events(
    events: &[EndpointEvent],
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    if events.is_empty() || events.len() > 10 {
        errors.push(FieldError::new("events", "must hold 1 to 10 event types"));
        return Vec::new();
    }
    let mut kept: Vec<String> = Vec::new();
    for event in events.iter().map(|e| e.as_str().to_owned()) {
        if !kept.contains(&event) {
            kept.push(event);
        }
    }
    kept
}

/// The description as sent is what the schema judges (length, control characters); what is
/// kept is it trimmed, and nothing when that is empty.
pub(crate) fn checked_description(
    raw: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let raw = raw?;
    if raw.chars().count() > MAX_DESCRIPTION {
        errors.push(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    } else if raw.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "description",
            "must not contain control characters",
        ));
    }
    let description = raw.trim();
    (!description.is_empty()).then(|| description.to_owned())
}

pub(crate) fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::validation("The webhook endpoint is not valid", errors)
}
