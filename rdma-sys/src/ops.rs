//! The hot-path verbs. In rdma-core these are static inline functions that
//! jump through the context's ops table; here the table's entries are read
//! once, when a QP or CQ is created, and called directly per burst.

use crate::ffi::{ibv_cq, ibv_qp, ibv_recv_wr, ibv_send_wr, ibv_wc};
use crate::VerbsError;

pub type PostSendFn =
    unsafe extern "C" fn(*mut ibv_qp, *mut ibv_send_wr, *mut *mut ibv_send_wr) -> libc::c_int;
pub type PostRecvFn =
    unsafe extern "C" fn(*mut ibv_qp, *mut ibv_recv_wr, *mut *mut ibv_recv_wr) -> libc::c_int;
pub type PollCqFn = unsafe extern "C" fn(*mut ibv_cq, libc::c_int, *mut ibv_wc) -> libc::c_int;

/// The QP's driver entry points for posting.
///
/// # Safety
/// `qp` must be a live QP from `ibv_create_qp`.
pub unsafe fn qp_ops(qp: *mut ibv_qp) -> Result<(PostSendFn, PostRecvFn), VerbsError> {
    let ctx = (*qp).context;
    let ops = &(*ctx).ops;
    match (ops.post_send, ops.post_recv) {
        (Some(s), Some(r)) => Ok((s, r)),
        _ => Err(VerbsError::new("ibv_post_send", libc::EOPNOTSUPP)),
    }
}

/// The CQ's driver entry point for polling.
///
/// # Safety
/// `cq` must be a live CQ from `ibv_create_cq`.
pub unsafe fn cq_poll_op(cq: *mut ibv_cq) -> Result<PollCqFn, VerbsError> {
    let ctx = (*cq).context;
    (*ctx)
        .ops
        .poll_cq
        .ok_or(VerbsError::new("ibv_poll_cq", libc::EOPNOTSUPP))
}

/// `ibv_post_send`: on failure, the errno and the first request not posted.
///
/// # Safety
/// `f` is `qp`'s post_send; `wr` a valid list whose buffers stay registered
/// until completion (or are inline).
#[inline(always)]
pub unsafe fn post_send(
    f: PostSendFn,
    qp: *mut ibv_qp,
    wr: *mut ibv_send_wr,
) -> Result<(), (VerbsError, *mut ibv_send_wr)> {
    let mut bad = core::ptr::null_mut();
    match f(qp, wr, &mut bad) {
        0 => Ok(()),
        e => Err((VerbsError::new("ibv_post_send", e.abs()), bad)),
    }
}

/// `ibv_post_recv`.
///
/// # Safety
/// As `post_send`, for receive buffers.
#[inline(always)]
pub unsafe fn post_recv(
    f: PostRecvFn,
    qp: *mut ibv_qp,
    wr: *mut ibv_recv_wr,
) -> Result<(), (VerbsError, *mut ibv_recv_wr)> {
    let mut bad = core::ptr::null_mut();
    match f(qp, wr, &mut bad) {
        0 => Ok(()),
        e => Err((VerbsError::new("ibv_post_recv", e.abs()), bad)),
    }
}

/// `ibv_poll_cq`: how many completions were written to `wc`.
///
/// # Safety
/// `f` is `cq`'s poll_cq; `wc` has room for `wc.len()` entries.
#[inline(always)]
pub unsafe fn poll_cq(
    f: PollCqFn,
    cq: *mut ibv_cq,
    wc: &mut [ibv_wc],
) -> Result<usize, VerbsError> {
    let n = f(cq, wc.len() as libc::c_int, wc.as_mut_ptr());
    if n < 0 {
        Err(VerbsError::new("ibv_poll_cq", -n))
    } else {
        Ok(n as usize)
    }
}
