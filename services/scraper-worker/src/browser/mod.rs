//! Headless Chromium through WebDriver: the chromedriver process, sessions, the settle wait, and the pool.

pub mod driver;
pub mod pool;
pub mod session;
pub mod settle;

pub use driver::ChromeDriver;
pub use pool::{BrowserPool, PooledSession};
pub use session::{BrowserSession, NetworkPolicy};
