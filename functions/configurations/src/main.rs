//! Lambda entry point: telemetry, state built once, then the router under `lambda_http`.

fn main() -> Result<(), lambda_http::Error> {
    // Templates are rendered by this binary started again as a rendering process.
    docbundle::render::sandbox::serve_if_child();
    run()
}

#[tokio::main]
async fn run() -> Result<(), lambda_http::Error> {
    docbundle::telemetry::init();
    let state = docbundle::AppState::from_env().await?;
    docbundle::runtime::ended(lambda_http::run(configurations::app(state)).await)
}
