//! How the use-cases' refusals answer: each use-case's error mapped once to a status and code.

use crate::error::{ApiError, FieldError};

/// How the use-cases' refusals answer: the domain's reasons mapped to statuses and codes.
impl From<docbundle_app::launch::LaunchError> for ApiError {
    fn from(e: docbundle_app::launch::LaunchError) -> Self {
        use docbundle_app::launch::LaunchError;
        match e {
            LaunchError::ConfigurationNotFound => ApiError::not_found("Configuration not found"),
            LaunchError::ConfigurationArchived => {
                ApiError::conflict("The configuration is archived: it launches no new runs")
            }
            LaunchError::Invalid { message, details } => ApiError::validation(message, details),
            LaunchError::RateLimited { retry_after_secs } => {
                ApiError::rate_limited(retry_after_secs)
            }
            LaunchError::KeyReused => ApiError::validation(
                "This Idempotency-Key was used with a different request body",
                vec![FieldError::new(
                    "Idempotency-Key",
                    "was used with a different request body",
                )],
            ),
            LaunchError::KeyInProgress => ApiError::conflict(
                "The request with this Idempotency-Key is still in progress; retry",
            ),
            LaunchError::Dependency(e) => e.into(),
            LaunchError::Inconsistent(cause) => ApiError::internal(cause),
        }
    }
}

impl From<docbundle_app::batches::BatchError> for ApiError {
    fn from(e: docbundle_app::batches::BatchError) -> Self {
        use docbundle_app::batches::BatchError;
        match e {
            BatchError::NotFound => ApiError::not_found("Batch not found"),
            BatchError::ConfigurationNotFound => ApiError::not_found("Configuration not found"),
            BatchError::ConfigurationArchived => {
                ApiError::conflict("The configuration is archived: it launches no new runs")
            }
            BatchError::Invalid { message, details } => ApiError::validation(message, details),
            BatchError::Conflict(message) => ApiError::conflict(message),
            BatchError::Limited {
                message,
                retry_after_secs,
            } => ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                format!("{message}; retry after {retry_after_secs} s"),
            )
            .with_header(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            ),
            BatchError::TooLarge { size, limit } => ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("The seeds file is {size} bytes; a batch reads at most {limit}"),
            ),
            BatchError::KeyReused => ApiError::validation(
                "This Idempotency-Key was used with a different request",
                vec![FieldError::new(
                    "Idempotency-Key",
                    "was used with a different request",
                )],
            ),
            BatchError::KeyInProgress => ApiError::conflict(
                "The request with this Idempotency-Key is still in progress; retry",
            ),
            BatchError::Dependency(e) => e.into(),
        }
    }
}

impl From<docbundle_app::assets::UploadError> for ApiError {
    fn from(e: docbundle_app::assets::UploadError) -> Self {
        use docbundle_app::assets::UploadError;
        match e {
            UploadError::Invalid(field) => {
                ApiError::validation("The asset is not valid", vec![field])
            }
            UploadError::MerchantNotFound => ApiError::not_found("Merchant not found"),
            UploadError::Dependency(e) => e.into(),
        }
    }
}

impl From<docbundle_app::preview::PreviewError> for ApiError {
    fn from(e: docbundle_app::preview::PreviewError) -> Self {
        use docbundle_app::preview::PreviewError;
        match e {
            PreviewError::Invalid { message, details } => ApiError::validation(message, details),
            PreviewError::Unavailable(cause) => ApiError::unavailable(cause),
            PreviewError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<docbundle_app::secrets::SecretError> for ApiError {
    fn from(e: docbundle_app::secrets::SecretError) -> Self {
        use docbundle_app::secrets::SecretError;
        match e {
            SecretError::Internal(cause) => ApiError::internal(cause),
            SecretError::Dependency(e) => e.into(),
        }
    }
}

impl From<docbundle_app::signing::ImportError> for ApiError {
    fn from(e: docbundle_app::signing::ImportError) -> Self {
        use docbundle_app::signing::ImportError;
        match e {
            ImportError::Invalid(problem) => ApiError::validation(
                "The certificate chain is not valid",
                vec![FieldError::new("chain", problem)],
            ),
            ImportError::Dependency(e) => e.into(),
        }
    }
}
