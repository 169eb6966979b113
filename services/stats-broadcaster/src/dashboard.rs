//! The dashboard: plain HTML, CSS and JavaScript modules embedded in the binary
//! (no build step, no CDN), served at `/` and `/assets/…` with security headers.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

/// Same-origin everything: scripts, styles and the WebSocket; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: &str = include_str!("../dashboard/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../dashboard/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/app.js"),
    },
    Asset {
        name: "board.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/board.js"),
    },
    Asset {
        name: "quiz.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/quiz.js"),
    },
    Asset {
        name: "socket.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/socket.js"),
    },
    Asset {
        name: "key.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/key.js"),
    },
    Asset {
        name: "motion.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/motion.js"),
    },
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/assets/{name}", web::get().to(asset));
}

async fn index() -> HttpResponse {
    respond("text/html; charset=utf-8", INDEX)
}

async fn asset(name: web::Path<String>) -> Result<HttpResponse, actix_web::Error> {
    ASSETS
        .iter()
        .find(|asset| asset.name == name.as_str())
        .map(|asset| respond(asset.content_type, asset.body))
        .ok_or_else(|| actix_web::error::ErrorNotFound("no such asset"))
}

fn respond(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        // Assets change with the binary; revalidating is cheap and never shows stale code.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .body(body)
}
