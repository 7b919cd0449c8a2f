use crate::helpers::assert_problem;
use crate::on_both_backends;

on_both_backends! {
    async fn unknown_routes_and_methods_are_problems(app) {
        assert_problem(app.get("/nope").await, 404).await;
        let response = app.client.delete(app.url("/healthz")).send().await.unwrap();
        assert_problem(response, 405).await;
    }

    async fn malformed_json_is_a_400_problem(app) {
        let response = app
            .client
            .post(app.url("/partner/api-keys"))
            .header("PartnerApiKey", &app.sandbox.api_key)
            .header("Content-Type", "application/json")
            .body("{\"expireCurrentKeysInSeconds\": ")
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["type"], "urn:onboard:problem:malformed-body");
    }

    async fn wrong_or_missing_content_type_is_415(app) {
        for content_type in [Some("text/plain"), None] {
            let mut request = app
                .client
                .post(app.url("/partner/api-keys"))
                .header("PartnerApiKey", &app.sandbox.api_key)
                .body(r#"{"expireCurrentKeysInSeconds": 0}"#);
            if let Some(ct) = content_type {
                request = request.header("Content-Type", ct);
            }
            assert_problem(request.send().await.unwrap(), 415).await;
        }
        assert_eq!(app.get_partner_with_key(&app.sandbox.api_key).await.status(), 200, "nothing was rotated");
    }

    async fn oversize_bodies_are_413(app) {
        let big = format!(r#"{{"expireCurrentKeysInSeconds": 0, "pad": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
        let response = app
            .client
            .post(app.url("/partner/api-keys"))
            .header("PartnerApiKey", &app.sandbox.api_key)
            .header("Content-Type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_problem(response, 413).await;
        let response = app
            .client
            .post(app.url("/oauth/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&pad={}", "x".repeat(2 * 1024 * 1024)))
            .send()
            .await
            .unwrap();
        assert_problem(response, 413).await;
        assert_eq!(app.get_partner_with_key(&app.sandbox.api_key).await.status(), 200);
    }

    async fn the_callers_traceparent_is_continued(app) {
        let response = app
            .client
            .get(app.url("/nope"))
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .send()
            .await
            .unwrap();
        assert!(response.headers()["traceresponse"].to_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        let problem = assert_problem(response, 404).await;
        assert!(problem["traceId"].as_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    async fn a_closed_database_gives_503_not_500(app) {
        app.store().close().await;
        let response = app.get_partner_with_key(&app.sandbox.api_key).await;
        assert!(response.headers().contains_key("retry-after"));
        assert_problem(response, 503).await;
    }
}
