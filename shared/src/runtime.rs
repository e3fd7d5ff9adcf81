//! How a function's process ends. The Runtime API (Lambda's, or the emulator under `sam local`)
//! goes away when its execution environment shuts down, cutting the runtime's long poll for
//! the next invocation: that ends the process's life, it is not an error to print.

use std::error::Error as StdError;

type BoxError = Box<dyn StdError + Send + Sync>;

/// `result` of `lambda_runtime::run` / `lambda_http::run`, with the Runtime API's going away
/// (its connection refused, reset or closed before the next invocation arrived) as a clean
/// end. Any other error stays an error.
pub fn ended(result: Result<(), BoxError>) -> Result<(), BoxError> {
    match result {
        Err(e) if runtime_api_gone(e.as_ref()) => {
            tracing::info!(reason = %e, "the Runtime API closed; the execution environment is shutting down");
            Ok(())
        }
        other => other,
    }
}

/// Whether an error from the runtime's client says its peer went away.
fn runtime_api_gone(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | BrokenPipe
                    | UnexpectedEof
            ) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::lambda_runtime;
    use tokio::io::AsyncReadExt;

    /// A Runtime API that takes the poll for the next invocation and closes the connection
    /// without an answer, as the emulator does when `sam local invoke` stops it.
    #[tokio::test]
    async fn a_runtime_api_that_goes_away_ends_the_process_cleanly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let polls = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        // Only this test sets the runtime's variables, before the runtime reads them.
        for (name, value) in [
            ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "test".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".to_owned()),
        ] {
            std::env::set_var(name, value);
        }
        let handler =
            lambda_runtime::service_fn(|_: lambda_runtime::LambdaEvent<serde_json::Value>| async {
                Ok::<_, lambda_runtime::Error>(serde_json::Value::Null)
            });
        let result = lambda_runtime::run(handler).await;
        let request = polls.await.unwrap();
        assert!(
            request.starts_with("GET /2018-06-01/runtime/invocation/next"),
            "{request}"
        );
        let error = result.expect_err("the cut poll is an error of the runtime");
        assert!(runtime_api_gone(error.as_ref()), "{error:?}");
        assert!(ended(Err(error)).is_ok());
        // Anything else stays an error.
        let other: BoxError = "handler state is broken".into();
        assert!(ended(Err(other)).is_err());
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(ended(Err(refused)).is_err());
    }
}
