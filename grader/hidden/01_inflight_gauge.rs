//! Hidden tests for kata 01: the in-flight gauge must come down however `forward` ends, and the
//! backend call must stop when the client leaves.

use std::time::Duration;

use inflight_gauge::{Gateway, Shed};
use kata_support::{DropFlag, Gate, assert_cancel_safe, hidden_test};
use tokio_test::{assert_pending, task};

hidden_test! {
    /// Nothing cancelled: the response comes back and the gauge returns to 0.
    async fn forwards_and_lowers_the_gauge() {
        let gateway = Gateway::new(2);
        let response = gateway.forward(async { "recommendations for alice" }).await;
        assert_eq!(response, Ok("recommendations for alice"));
        assert_eq!(gateway.in_flight(), 0, "after a completed request the gauge must read 0");
    }

    /// The gauge measures load: it must read 1 while the backend is busy, and shed past the limit.
    async fn counts_requests_while_they_are_in_flight() {
        let gateway = Gateway::new(1);
        let backend = Gate::closed();
        let held = backend.clone();
        let mut first = task::spawn(gateway.forward(async move { held.pass().await }));
        assert_pending!(first.poll());
        assert_eq!(
            gateway.in_flight(),
            1,
            "while a request waits for the backend the gauge must read 1; lowering it before the \
             `.await` hides the load from the shedder"
        );
        assert_eq!(
            gateway.forward(async {}).await,
            Err(Shed),
            "with limit 1 and one request in flight, a second request must be shed"
        );
        backend.open();
        assert!(first.poll().is_ready());
        assert_eq!(gateway.in_flight(), 0);
    }

    /// Cancelled at every point `forward` can be cancelled, the gauge must be back at 0.
    async fn gauge_returns_to_zero_at_every_cancellation_point() {
        assert_cancel_safe(
            || Gateway::new(4),
            |gateway: Gateway| async move {
                gateway
                    .forward(async {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    })
                    .await
            },
            |gateway, _| async move {
                match gateway.in_flight() {
                    0 => Ok(()),
                    n => Err(format!(
                        "the client left, but the gauge still reads {n} request(s) in flight \
                         (expected 0): the code after `.await` never ran"
                    )),
                }
            },
        )
        .await;
    }

    /// A client that disconnects `limit` times must not lock everybody out.
    async fn cancelled_requests_do_not_exhaust_the_limit() {
        let gateway = Gateway::new(3);
        for _ in 0..3 {
            let mut request = task::spawn(gateway.forward(std::future::pending::<()>()));
            assert_pending!(request.poll());
            drop(request);
        }
        let response = gateway.forward(async { 200 }).await;
        assert_eq!(
            response,
            Ok(200),
            "after 3 cancelled requests a gateway with limit 3 shed a request: the cancelled ones \
             still count as in flight"
        );
    }

    /// When the client leaves, the backend call must be dropped with `forward`, not left running.
    async fn drops_the_backend_call_when_the_client_leaves() {
        let gateway = Gateway::new(2);
        let (flag, probe) = DropFlag::new();
        let backend = Gate::closed();
        let call = {
            let backend = backend.clone();
            async move {
                let _flag = flag;
                backend.pass().await;
            }
        };
        let mut request = task::spawn(gateway.forward(call));
        assert_pending!(request.poll());
        drop(request);
        kata_support::settle().await;
        assert!(
            probe.is_dropped(),
            "the client left but the backend call is still running: it was detached instead of \
             cancelled, so the gateway keeps working for nobody"
        );
        assert_eq!(gateway.in_flight(), 0, "the client left; the gauge must read 0 at once");
    }
}
