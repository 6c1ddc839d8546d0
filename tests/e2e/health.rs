//! Liveness.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_200() {
    let server = TestServer::start("").await;
    let page = Browser::new().get(&server.url("/healthz")).await;
    page.assert_status(200);
    assert_eq!(page.text, "ok");
}
