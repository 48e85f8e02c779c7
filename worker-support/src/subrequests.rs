//! Counting the subrequests one request makes. Cloudflare caps them per
//! invocation (50 fetches on the Free plan), and `wrangler dev` does not, so
//! each Worker can report its count in a response header
//! (`ATCR-Subrequests`, when `REPORT_SUBREQUESTS` is set) and the tests hold
//! every request to a budget.
//!
//! A Worker isolate serves concurrent requests on one thread, each request
//! its own task. [`Counted`] makes its counter the current one for exactly
//! the time its task is polled, so a fetch started while handling a request
//! is charged to that request and no other.

use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use worker::{Env, Response, Result};

thread_local! {
    static CURRENT: RefCell<Option<Rc<Cell<u32>>>> = const { RefCell::new(None) };
    static REPORT: OnceCell<bool> = const { OnceCell::new() };
}

/// Charges one subrequest to the request being handled (if any is counted).
pub fn note() {
    CURRENT.with(|current| {
        if let Some(count) = current.borrow().as_ref() {
            count.set(count.get() + 1);
        }
    });
}

/// A future whose fetches are charged to `count`.
pub struct Counted<F> {
    inner: Pin<Box<F>>,
    count: Rc<Cell<u32>>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mine = Some(self.count.clone());
        let outer = CURRENT.with(|current| current.replace(mine));
        let polled = self.inner.as_mut().poll(cx);
        CURRENT.with(|current| *current.borrow_mut() = outer);
        polled
    }
}

/// `future`, counting the subrequests it makes into a fresh counter.
pub fn counted<F: Future>(future: F) -> (Counted<F>, Rc<Cell<u32>>) {
    let count = Rc::new(Cell::new(0));
    let future = Counted {
        inner: Box::pin(future),
        count: count.clone(),
    };
    (future, count)
}

/// The response header that reports the count.
pub const HEADER: &str = "ATCR-Subrequests";

/// Runs a Worker's request handler, counting its subrequests, and reports
/// the count in the `ATCR-Subrequests` header when the Worker's
/// `REPORT_SUBREQUESTS` variable is `true` (the local stack sets it).
pub async fn reported<F>(env: &Env, handler: F) -> Result<Response>
where
    F: Future<Output = Result<Response>>,
{
    let (handler, count) = counted(handler);
    let mut resp = handler.await?;
    // Read once per isolate: an isolate's variables never change.
    let report = REPORT.with(|r| {
        *r.get_or_init(|| {
            env.var("REPORT_SUBREQUESTS")
                .is_ok_and(|v| v.to_string() == "true")
        })
    });
    if report {
        // Headers of a response passed through from a fetch are immutable;
        // such a response goes out unreported.
        let _ = resp.headers_mut().set(HEADER, &count.get().to_string());
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::join;
    use futures_util::FutureExt;

    async fn fetches(n: u32) {
        for _ in 0..n {
            note();
            // Yield, so interleaved requests take turns.
            futures_util::future::ready(()).await;
        }
    }

    #[test]
    fn each_request_is_charged_only_its_own_fetches() {
        let (a, count_a) = counted(fetches(3));
        let (b, count_b) = counted(async {
            fetches(2).await;
            fetches(5).await;
        });
        join(a, b).now_or_never().unwrap();
        assert_eq!((count_a.get(), count_b.get()), (3, 7));
        // Outside any request nothing is counted, and nothing panics.
        note();
        assert_eq!((count_a.get(), count_b.get()), (3, 7));
    }
}
