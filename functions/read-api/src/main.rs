//! Lambda entry point: telemetry, state built once, then the router under `lambda_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    docbundle::telemetry::init();
    let state = docbundle::AppState::from_env().await?;
    docbundle::runtime::ended(lambda_http::run(read_api::app(state)).await)
}
