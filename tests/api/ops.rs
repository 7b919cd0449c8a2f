use crate::helpers::assert_problem;
use crate::on_both_backends;

on_both_backends! {
    async fn operator_endpoints_answer_with_their_content_types(app) {
        for (path, content_type) in [
            ("/healthz", "application/json"),
            ("/readyz", "application/json"),
            ("/metrics", "text/plain"),
            ("/openapi.json", "application/json"),
            ("/docs", "text/html"),
            ("/.well-known/jwks.json", "application/json"),
        ] {
            let response = app.get(path).await;
            assert_eq!(response.status(), 200, "{path}");
            let got = response.headers()["content-type"].to_str().unwrap();
            assert!(got.starts_with(content_type), "{path}: {got}");
        }
    }

    async fn readiness_reports_database_and_migrations(app) {
        // Test apps start with no sanctions list: the node serves, degraded, and says why.
        let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
        assert_eq!((body["status"].as_str(), body["sanctions"].as_str()), (Some("degraded"), Some("missing")));
        assert_eq!(body["migrations"], "current");
        crate::prospects::load_small_list(&app).await;
        let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
        assert_eq!((body["status"].as_str(), body["sanctions"].as_str()), (Some("ready"), Some("loaded")));
        assert!(body["sanctionsListVersion"].as_i64().is_some(), "{body}");
    }

    async fn readiness_fails_when_the_database_is_gone(app) {
        app.store().close().await;
        let response = app.get("/readyz").await;
        assert!(response.headers().contains_key("retry-after"));
        assert_problem(response, 503).await;
        // Liveness does not depend on the database.
        assert_eq!(app.get("/healthz").await.status(), 200);
    }

    async fn metrics_count_requests_by_route_template(app) {
        app.get("/healthz").await;
        app.get("/no/such/route/ana@example.org").await;
        let text = app.get("/metrics").await.text().await.unwrap();
        assert!(text.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"}"#), "{text}");
        assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
        assert!(!text.contains("ana@example.org"));
        assert!(text.contains("http_request_duration_seconds_bucket"));
        assert!(text.contains("db_pool_connections"));
    }

    async fn openapi_document_describes_the_routes(app) {
        let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
        assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
        let admin = [
            "/admin/sanctions/screen", "/admin/sanctions/list", "/admin/jobs", "/admin/jobs/{id}/retry",
            "/admin/compliance", "/admin/compliance/{userId}/clear", "/admin/compliance/{userId}/block",
            "/admin/users/{userId}/events", "/admin/partners/{partnerId}/kyc",
        ];
        let kyc = ["/me/profile", "/kyc/access-token", "/users/{userId}/kyc/access-token", "/webhooks/kyc/sumsub"];
        for path in ["/oauth/token", "/partner", "/partner/api-keys", "/healthz", "/readyz"].into_iter().chain(admin).chain(kyc) {
            assert!(spec["paths"].get(path).is_some(), "{path} missing");
        }
        assert!(spec.pointer("/components/securitySchemes/partnerApiKey").is_some());
        // The shared problem responses are declared once and still reach every route that names them.
        let problem = spec.pointer("/paths/~1partner~1api-keys/post/responses/415/content/application~1problem+json/schema");
        assert_eq!(problem.and_then(|s| s["$ref"].as_str()), Some("#/components/schemas/Problem"), "{problem:?}");
        assert!(spec.pointer("/components/schemas/Problem").is_some());
    }
}
