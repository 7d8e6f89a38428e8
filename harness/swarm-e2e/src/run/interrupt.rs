//! SIGINT and SIGTERM. First signal: stop and tear down. Second: stop waiting for
//! in-flight work, but still remove everything.

use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Interrupt {
    pub stop: CancellationToken,
    pub hurry: CancellationToken,
}

impl Interrupt {
    /// Listens for SIGINT and SIGTERM on the runtime.
    pub fn install(rt: &Runtime) -> Interrupt {
        let it = Interrupt::default();
        let handle = it.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if handle.stop.is_cancelled() {
                    handle.hurry.cancel();
                } else {
                    handle.stop.cancel();
                }
            }
        });
        it
    }
}
