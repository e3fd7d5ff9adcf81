//! A failed call to a dependency, with the dependency and the operation named.

use std::fmt;

/// A failed call to a dependency (database, S3, SQS, Vault, Redis, the issuer), with context.
#[derive(Debug, thiserror::Error)]
#[error("{dependency} {operation}: {kind}")]
pub struct DependencyError {
    pub dependency: &'static str,
    pub operation: String,
    pub kind: DependencyFailure,
}

#[derive(Debug, thiserror::Error)]
pub enum DependencyFailure {
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Failed(String),
}

impl DependencyError {
    pub fn failed(
        dependency: &'static str,
        operation: impl Into<String>,
        cause: impl fmt::Display,
    ) -> Self {
        DependencyError {
            dependency,
            operation: operation.into(),
            kind: DependencyFailure::Failed(cause.to_string()),
        }
    }

    pub fn timeout(
        dependency: &'static str,
        operation: impl Into<String>,
        after: std::time::Duration,
    ) -> Self {
        DependencyError {
            dependency,
            operation: operation.into(),
            kind: DependencyFailure::Timeout(after),
        }
    }
}

/// A log whose stored tree has a gap is a fault of the database's contents.
impl From<docbundle_domain::merkle::Missing> for DependencyError {
    fn from(missing: docbundle_domain::merkle::Missing) -> Self {
        DependencyError::failed("postgres", "read log nodes", missing)
    }
}

/// Runs `call` with `timeout`, mapping both the timeout and the call's own error to a
/// [`DependencyError`] that names the dependency and the operation.
pub async fn with_timeout<T, E, F>(
    dependency: &'static str,
    operation: &str,
    timeout: std::time::Duration,
    call: F,
) -> Result<T, DependencyError>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(DependencyError::failed(dependency, operation, e)),
        Err(_) => Err(DependencyError::timeout(dependency, operation, timeout)),
    }
}

/// An error with every cause behind it (a TLS failure names the certificate problem only a
/// few levels down).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeouts_name_the_dependency() {
        let err = with_timeout(
            "vault",
            "sign manifest",
            std::time::Duration::from_millis(5),
            async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                Ok::<_, std::io::Error>(())
            },
        )
        .await
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("vault sign manifest: timed out"));
    }
}
