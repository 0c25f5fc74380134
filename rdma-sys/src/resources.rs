//! RAII wrappers of the verbs objects. Each holds what it was made from
//! (an `Arc`), so a context outlives its PDs, a PD its MRs, QPs and AHs,
//! and CQs their QPs; drop order can never break the device.

use crate::device::Context;
use crate::ffi::*;
use crate::ops::{self, PollCqFn, PostRecvFn, PostSendFn};
use crate::{Gid, VerbsError};
use std::ptr::NonNull;
use std::sync::Arc;

macro_rules! raw_handle {
    ($inner:ident, $raw:ty, $destroy:ident) => {
        // SAFETY: libibverbs objects may be used and destroyed from any thread.
        unsafe impl Send for $inner {}
        unsafe impl Sync for $inner {}
        impl Drop for $inner {
            fn drop(&mut self) {
                // SAFETY: created by the matching verb, destroyed once, and
                // everything made from it holds a reference to it.
                unsafe { (self.ctx.verbs().$destroy)(self.raw.as_ptr()) };
            }
        }
    };
}

struct PdInner {
    ctx: Context,
    raw: NonNull<ibv_pd>,
}
raw_handle!(PdInner, ibv_pd, ibv_dealloc_pd);

/// A protection domain.
#[derive(Clone)]
pub struct Pd(Arc<PdInner>);

impl Pd {
    pub fn new(ctx: &Context) -> Result<Pd, VerbsError> {
        // SAFETY: live context.
        let raw = unsafe { (ctx.verbs().ibv_alloc_pd)(ctx.as_ptr()) };
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("ibv_alloc_pd"))?;
        Ok(Pd(Arc::new(PdInner {
            ctx: ctx.clone(),
            raw,
        })))
    }
    pub fn context(&self) -> &Context {
        &self.0.ctx
    }
    pub fn as_ptr(&self) -> *mut ibv_pd {
        self.0.raw.as_ptr()
    }
}

/// A registered memory region.
pub struct Mr {
    _pd: Pd,
    ctx: Context,
    raw: NonNull<ibv_mr>,
}
raw_handle!(Mr, ibv_mr, ibv_dereg_mr);

impl Mr {
    /// Registers `len` bytes at `addr` for local access.
    ///
    /// # Safety
    /// The memory must stay mapped for the region's life.
    pub unsafe fn register(pd: &Pd, addr: *mut u8, len: usize) -> Result<Mr, VerbsError> {
        let access = IBV_ACCESS_LOCAL_WRITE as libc::c_int;
        let raw = (pd.context().verbs().ibv_reg_mr)(pd.as_ptr(), addr.cast(), len, access);
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("ibv_reg_mr"))?;
        Ok(Mr {
            _pd: pd.clone(),
            ctx: pd.context().clone(),
            raw,
        })
    }
    pub fn lkey(&self) -> u32 {
        // SAFETY: live MR.
        unsafe { self.raw.as_ref().lkey }
    }
}

/// A completion event channel (its fd becomes readable on a CQ event).
pub struct CompChannel {
    ctx: Context,
    raw: NonNull<ibv_comp_channel>,
}
raw_handle!(CompChannel, ibv_comp_channel, ibv_destroy_comp_channel);

impl CompChannel {
    pub fn new(ctx: &Context) -> Result<Arc<CompChannel>, VerbsError> {
        // SAFETY: live context.
        let raw = unsafe { (ctx.verbs().ibv_create_comp_channel)(ctx.as_ptr()) };
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("ibv_create_comp_channel"))?;
        Ok(Arc::new(CompChannel {
            ctx: ctx.clone(),
            raw,
        }))
    }
    pub fn fd(&self) -> libc::c_int {
        // SAFETY: live channel.
        unsafe { self.raw.as_ref().fd }
    }
}

struct CqInner {
    ctx: Context,
    _channel: Option<Arc<CompChannel>>,
    raw: NonNull<ibv_cq>,
}
raw_handle!(CqInner, ibv_cq, ibv_destroy_cq);

/// A completion queue with its driver's poll entry point.
#[derive(Clone)]
pub struct Cq {
    inner: Arc<CqInner>,
    poll: PollCqFn,
}

impl Cq {
    pub fn new(
        ctx: &Context,
        depth: u32,
        channel: Option<Arc<CompChannel>>,
    ) -> Result<Cq, VerbsError> {
        let ch = channel
            .as_ref()
            .map_or(std::ptr::null_mut(), |c| c.raw.as_ptr());
        // SAFETY: live context; the channel (if any) outlives the CQ.
        let raw = unsafe {
            (ctx.verbs().ibv_create_cq)(
                ctx.as_ptr(),
                depth as libc::c_int,
                std::ptr::null_mut(),
                ch,
                0,
            )
        };
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("ibv_create_cq"))?;
        let inner = Arc::new(CqInner {
            ctx: ctx.clone(),
            _channel: channel,
            raw,
        });
        // SAFETY: live CQ.
        let poll = unsafe { ops::cq_poll_op(raw.as_ptr())? };
        Ok(Cq { inner, poll })
    }

    pub fn as_ptr(&self) -> *mut ibv_cq {
        self.inner.raw.as_ptr()
    }

    /// `ibv_poll_cq` into `wc`: the number of completions written.
    #[inline(always)]
    pub fn poll(&self, wc: &mut [ibv_wc]) -> Result<usize, VerbsError> {
        // SAFETY: the entry point is this CQ's; wc is writable for its length.
        unsafe { ops::poll_cq(self.poll, self.as_ptr(), wc) }
    }
}

/// What a UD QP is created and brought up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdQpSpec {
    pub port: u8,
    pub pkey_index: u16,
    pub qkey: u32,
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_inline: u32,
}

/// A queue pair with its driver's post entry points.
pub struct Qp {
    _pd: Pd,
    ctx: Context,
    _send_cq: Cq,
    _recv_cq: Cq,
    raw: NonNull<ibv_qp>,
    post_send: PostSendFn,
    post_recv: PostRecvFn,
    max_inline: u32,
}
raw_handle!(Qp, ibv_qp, ibv_destroy_qp);

impl Qp {
    /// A UD QP taken RESET → INIT (P_Key index, port, Q_Key) → RTR → RTS.
    pub fn new_ud(pd: &Pd, send_cq: &Cq, recv_cq: &Cq, spec: &UdQpSpec) -> Result<Qp, VerbsError> {
        let ctx = pd.context().clone();
        let mut init = ibv_qp_init_attr {
            send_cq: send_cq.as_ptr(),
            recv_cq: recv_cq.as_ptr(),
            cap: ibv_qp_cap {
                max_send_wr: spec.max_send_wr,
                max_recv_wr: spec.max_recv_wr,
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: spec.max_inline,
            },
            qp_type: IBV_QPT_UD,
            sq_sig_all: 0,
            ..Default::default()
        };
        // SAFETY: live PD and CQs; init is fully initialised.
        let raw = unsafe { (ctx.verbs().ibv_create_qp)(pd.as_ptr(), &mut init) };
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("ibv_create_qp"))?;
        // SAFETY: live QP.
        let (post_send, post_recv) = match unsafe { ops::qp_ops(raw.as_ptr()) } {
            Ok(f) => f,
            Err(e) => {
                // SAFETY: just created, nothing else refers to it.
                unsafe { (ctx.verbs().ibv_destroy_qp)(raw.as_ptr()) };
                return Err(e);
            }
        };
        let qp = Qp {
            _pd: pd.clone(),
            ctx,
            _send_cq: send_cq.clone(),
            _recv_cq: recv_cq.clone(),
            raw,
            post_send,
            post_recv,
            // The driver may round the inline size up: it reports the real one.
            max_inline: init.cap.max_inline_data,
        };
        qp.modify(
            &mut ibv_qp_attr {
                qp_state: IBV_QPS_INIT,
                pkey_index: spec.pkey_index,
                port_num: spec.port,
                qkey: spec.qkey,
                ..Default::default()
            },
            IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY,
        )?;
        qp.modify(
            &mut ibv_qp_attr {
                qp_state: IBV_QPS_RTR,
                ..Default::default()
            },
            IBV_QP_STATE,
        )?;
        qp.modify(
            &mut ibv_qp_attr {
                qp_state: IBV_QPS_RTS,
                sq_psn: 0,
                ..Default::default()
            },
            IBV_QP_STATE | IBV_QP_SQ_PSN,
        )?;
        Ok(qp)
    }

    fn modify(&self, attr: &mut ibv_qp_attr, mask: ibv_qp_attr_mask) -> Result<(), VerbsError> {
        // SAFETY: live QP, attr valid for the mask.
        let rc = unsafe {
            (self.ctx.verbs().ibv_modify_qp)(self.raw.as_ptr(), attr, mask as libc::c_int)
        };
        VerbsError::check("ibv_modify_qp", rc)
    }

    /// Moves the QP to the error state: every posted request is flushed
    /// and the device no longer writes into any receive buffer.
    pub fn to_error(&self) -> Result<(), VerbsError> {
        self.modify(
            &mut ibv_qp_attr {
                qp_state: IBV_QPS_ERR,
                ..Default::default()
            },
            IBV_QP_STATE,
        )
    }

    pub fn qp_num(&self) -> u32 {
        // SAFETY: live QP.
        unsafe { self.raw.as_ref().qp_num }
    }

    /// The inline data size the driver granted.
    pub fn max_inline(&self) -> u32 {
        self.max_inline
    }

    pub fn as_ptr(&self) -> *mut ibv_qp {
        self.raw.as_ptr()
    }

    /// `ibv_post_send` of a linked list.
    ///
    /// # Safety
    /// `wr`'s buffers are registered (or inline) and stay alive until completion.
    #[inline(always)]
    pub unsafe fn post_send(
        &self,
        wr: *mut ibv_send_wr,
    ) -> Result<(), (VerbsError, *mut ibv_send_wr)> {
        ops::post_send(self.post_send, self.as_ptr(), wr)
    }

    /// `ibv_post_recv` of a linked list.
    ///
    /// # Safety
    /// As `post_send`.
    #[inline(always)]
    pub unsafe fn post_recv(
        &self,
        wr: *mut ibv_recv_wr,
    ) -> Result<(), (VerbsError, *mut ibv_recv_wr)> {
        ops::post_recv(self.post_recv, self.as_ptr(), wr)
    }

    pub fn attach_mcast(&self, gid: &Gid, lid: u16) -> Result<(), VerbsError> {
        let g = ibv_gid { raw: *gid };
        // SAFETY: live QP.
        let rc = unsafe { (self.ctx.verbs().ibv_attach_mcast)(self.as_ptr(), &g, lid) };
        VerbsError::check("ibv_attach_mcast", rc)
    }

    pub fn detach_mcast(&self, gid: &Gid, lid: u16) -> Result<(), VerbsError> {
        let g = ibv_gid { raw: *gid };
        // SAFETY: live QP.
        let rc = unsafe { (self.ctx.verbs().ibv_detach_mcast)(self.as_ptr(), &g, lid) };
        VerbsError::check("ibv_detach_mcast", rc)
    }
}

/// Where an address handle points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AhSpec {
    pub port: u8,
    pub dlid: u16,
    pub sl: u8,
    /// With a GRH (RoCE always; IB for multicast and routed paths).
    pub grh: Option<(Gid, u8)>,
}

/// An address handle. `raw()` is what a UD send work request carries.
pub struct Ah {
    _pd: Pd,
    ctx: Context,
    raw: NonNull<ibv_ah>,
}
raw_handle!(Ah, ibv_ah, ibv_destroy_ah);

impl Ah {
    /// `ibv_create_ah`; with a GRH, `grh.1` is the source GID index and the
    /// hop limit is 64 (as rxe and rdma_cm use on RoCEv2).
    pub fn new(pd: &Pd, spec: &AhSpec) -> Result<Ah, VerbsError> {
        let mut attr = ibv_ah_attr {
            dlid: spec.dlid,
            sl: spec.sl,
            port_num: spec.port,
            ..Default::default()
        };
        if let Some((dgid, sgid_index)) = spec.grh {
            attr.is_global = 1;
            attr.grh.dgid = ibv_gid { raw: dgid };
            attr.grh.sgid_index = sgid_index;
            attr.grh.hop_limit = 64;
        }
        // SAFETY: live PD, attr initialised.
        let raw = unsafe { (pd.context().verbs().ibv_create_ah)(pd.as_ptr(), &mut attr) };
        let raw = NonNull::new(raw).ok_or_else(|| VerbsError::last("ibv_create_ah"))?;
        Ok(Ah {
            _pd: pd.clone(),
            ctx: pd.context().clone(),
            raw,
        })
    }

    pub fn raw(&self) -> *mut ibv_ah {
        self.raw.as_ptr()
    }

    pub fn handle(&self) -> NonNull<ibv_ah> {
        self.raw
    }
}
