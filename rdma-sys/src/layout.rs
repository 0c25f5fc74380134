//! Compile-time checks that the checked-in bindings have the x86-64 ABI of
//! rdma-core's structures the hot path touches. A regenerated binding that
//! moved any of these fails to build instead of corrupting memory.

use crate::ffi::*;
use core::mem::{offset_of, size_of};

macro_rules! assert_layout {
    ($($e:expr),* $(,)?) => { $(const _: () = assert!($e);)* };
}

#[cfg(target_pointer_width = "64")]
assert_layout! {
    // The context's ops table: where ibv_post_send & co. find the driver.
    offset_of!(ibv_context, device) == 0,
    offset_of!(ibv_context, ops) == 8,
    offset_of!(ibv_context_ops, poll_cq) == 88,
    offset_of!(ibv_context_ops, req_notify_cq) == 96,
    offset_of!(ibv_context_ops, post_send) == 200,
    offset_of!(ibv_context_ops, post_recv) == 208,
    offset_of!(ibv_qp, context) == 0,
    offset_of!(ibv_cq, context) == 0,
    // Work requests and completions, built and read per packet.
    size_of::<ibv_sge>() == 16,
    size_of::<ibv_recv_wr>() == 32,
    size_of::<ibv_send_wr>() == 128,
    offset_of!(ibv_send_wr, sg_list) == 16,
    offset_of!(ibv_send_wr, opcode) == 28,
    offset_of!(ibv_send_wr, send_flags) == 32,
    offset_of!(ibv_send_wr, wr) == 40,
    size_of::<ibv_wc>() == 48,
    offset_of!(ibv_wc, status) == 8,
    offset_of!(ibv_wc, byte_len) == 20,
    offset_of!(ibv_wc, src_qp) == 32,
    offset_of!(ibv_wc, wc_flags) == 36,
    offset_of!(ibv_wc, slid) == 42,
    size_of::<ibv_grh>() == 40,
    size_of::<ibv_gid>() == 16,
    size_of::<ibv_ah_attr>() == 32,
    offset_of!(ibv_qp, qp_num) == 52,
}
