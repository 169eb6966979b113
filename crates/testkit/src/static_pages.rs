//! A static file server on loopback, for pages the scraper is pointed at in tests.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};

pub struct StaticPages {
    address: SocketAddr,
    handle: ServerHandle,
}

impl StaticPages {
    /// Serves the files of `root` (not its subfolders) on an ephemeral 127.0.0.1 port.
    pub fn serve(root: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let root = web::Data::new(root.into());
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(root.clone())
                .route("/{name}", web::get().to(file))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { address, handle })
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.address)
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn file(root: web::Data<PathBuf>, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    if name.contains('/') || name.contains("..") {
        return HttpResponse::NotFound().finish();
    }
    match std::fs::read(root.join(&name)) {
        Ok(bytes) => {
            let content_type = if name.ends_with(".html") {
                "text/html; charset=utf-8"
            } else {
                "application/octet-stream"
            };
            HttpResponse::Ok().content_type(content_type).body(bytes)
        }
        Err(_) => HttpResponse::NotFound().finish(),
    }
}
