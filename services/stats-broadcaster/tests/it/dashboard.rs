//! The dashboard's HTTP side: embedded assets with their types and security headers.

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_dashboard_is_served_with_security_headers() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", app.replicas[0]);
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers().get(name).unwrap().to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let body = page.text().await.unwrap();
    assert!(body.contains(r#"<meta name="viewport""#));
    assert!(body.contains(r#"<script type="module" src="/assets/app.js">"#));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "no external resources"
    );

    for (name, kind) in [
        ("app.js", "text/javascript"),
        ("quiz.js", "text/javascript"),
        ("style.css", "text/css"),
    ] {
        let asset = http.get(format!("{base}/assets/{name}")).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{name}");
        let content_type = asset.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with(kind), "{name}: {content_type}");
        assert_eq!(asset.headers()["x-content-type-options"], "nosniff");
    }
    let missing = http.get(format!("{base}/assets/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await.unwrap();
}
