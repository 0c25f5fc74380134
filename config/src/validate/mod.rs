//! Raw TOML values → typed `model`, checking ranges, uniqueness and cross-references.
//! Every error points at the offending value's span.

mod addr;
mod interface;
mod provider;
mod traffic;

use std::ops::Range;

use toml::Spanned;

use crate::error::{snippet, ConfigError, ErrorKind};
use crate::model::{Config, Control, Dataplane, Log, Metrics, Run};
use crate::raw::{Float, Int, RawConfig, RawControl, RawDataplane, RawMetrics, RawRun, U64Literal};
use crate::schema::{self, IntRange};

pub(crate) type Result<T> = std::result::Result<T, ConfigError>;

/// The source being validated, for positions and quoting.
pub(crate) struct Ctx<'a> {
    pub source: &'a str,
    pub file: &'a str,
}

impl Ctx<'_> {
    /// "`path`: expected `expected`, got <the source text at span>".
    pub fn invalid(&self, span: &Range<usize>, path: &str, expected: &str) -> ConfigError {
        self.invalid_msg(
            span,
            path,
            format!("expected {expected}, got {}", snippet(self.source, span)),
        )
    }

    pub fn invalid_msg(&self, span: &Range<usize>, path: &str, message: String) -> ConfigError {
        ConfigError::new(ErrorKind::Invalid, self.file, message)
            .at(self.source, Some(span.clone()))
            .key(path)
    }

    /// An integer in `range`, converted to the model's type.
    pub fn int<T: TryFrom<i64>>(&self, v: &Int, path: &str, range: IntRange) -> Result<T> {
        self.int_with(v, path, range, &format!("an integer in {range}"))
    }

    /// Like `int`, with a custom description of what is allowed.
    pub fn int_with<T: TryFrom<i64>>(
        &self,
        v: &Int,
        path: &str,
        range: IntRange,
        expected: &str,
    ) -> Result<T> {
        let value = *v.get_ref();
        if !range.contains(value) {
            return Err(self.invalid(&v.span(), path, expected));
        }
        T::try_from(value).map_err(|_| self.invalid(&v.span(), path, expected))
    }

    pub fn int_or<T: TryFrom<i64>>(
        &self,
        v: &Option<Int>,
        path: &str,
        range: IntRange,
        default: T,
    ) -> Result<T> {
        v.as_ref().map_or(Ok(default), |v| self.int(v, path, range))
    }

    pub fn float_or(
        &self,
        v: &Option<Float>,
        path: &str,
        (lo, hi): (f64, f64),
        default: f64,
    ) -> Result<f64> {
        let Some(v) = v else { return Ok(default) };
        let value = *v.get_ref();
        // `contains` is false for NaN, so NaN is rejected too.
        if (lo..=hi).contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(&v.span(), path, &format!("a number in {lo:?}..={hi:?}")))
        }
    }

    /// A full-range u64 written as an integer or a "0x..." string.
    pub fn u64(&self, v: &Spanned<U64Literal>, path: &str, expected: &str) -> Result<u64> {
        let parsed = match v.get_ref() {
            U64Literal::Int(i) => u64::try_from(*i).ok(),
            U64Literal::Text(text) => text
                .strip_prefix("0x")
                .or_else(|| text.strip_prefix("0X"))
                .filter(|digits| !digits.is_empty() && !digits.starts_with(['+', '-']))
                .and_then(|digits| u64::from_str_radix(&digits.replace('_', ""), 16).ok()),
        };
        parsed.ok_or_else(|| self.invalid(&v.span(), path, expected))
    }
}

pub(crate) fn validate(raw: &RawConfig, ctx: &Ctx<'_>) -> Result<Config> {
    let dataplane = dataplane(&raw.dataplane, ctx)?;
    let provider = provider::provider(&raw.provider, ctx)?;
    let interfaces = interface::interfaces(&raw.interface, &dataplane, &provider, ctx)?;
    let traffic = traffic::traffic(&raw.traffic, &interfaces, ctx)?;
    Ok(Config {
        dataplane,
        provider,
        interfaces,
        traffic,
        control: control(&raw.control, ctx)?,
        run: run(&raw.run, ctx)?,
        log: Log {
            level: raw.log.level.unwrap_or_default(),
        },
        metrics: metrics(&raw.metrics, ctx)?,
    })
}

fn metrics(raw: &RawMetrics, ctx: &Ctx<'_>) -> Result<Metrics> {
    let listen = match &raw.listen {
        None => None,
        Some(v) => Some(v.get_ref().parse().map_err(|_| {
            ctx.invalid(
                &v.span(),
                "metrics.listen",
                "an IP address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\"",
            )
        })?),
    };
    Ok(Metrics { listen })
}

fn dataplane(raw: &RawDataplane, ctx: &Ctx<'_>) -> Result<Dataplane> {
    let d = Dataplane::default();
    let lcores = match &raw.lcores {
        None => d.lcores,
        Some(list) => lcores(list, ctx)?,
    };
    let mempool_size = ctx.int_or(
        &raw.mempool_size,
        "dataplane.mempool_size",
        schema::MEMPOOL_SIZE,
        d.mempool_size,
    )?;
    let mempool_cache = match &raw.mempool_cache {
        None => d.mempool_cache.min(mempool_size / 4),
        Some(v) => {
            let most = i64::from(mempool_size / 4).min(schema::MEMPOOL_CACHE.hi);
            let range = IntRange::dec(schema::MEMPOOL_CACHE.lo, most);
            let expected = format!(
                "an integer in {} and at most mempool_size / 4 = {}",
                schema::MEMPOOL_CACHE,
                mempool_size / 4
            );
            ctx.int_with(v, "dataplane.mempool_cache", range, &expected)?
        }
    };
    Ok(Dataplane {
        lcores,
        burst: ctx.int_or(&raw.burst, "dataplane.burst", schema::BURST, d.burst)?,
        tx_ring_size: ring_size(&raw.tx_ring_size, "dataplane.tx_ring_size", ctx)?,
        rx_ring_size: ring_size(&raw.rx_ring_size, "dataplane.rx_ring_size", ctx)?,
        mempool_size,
        mempool_cache,
        buf_size: ctx.int_or(
            &raw.buf_size,
            "dataplane.buf_size",
            schema::BUF_SIZE,
            d.buf_size,
        )?,
        hugepages: raw.hugepages.unwrap_or_default(),
    })
}

fn lcores(list: &Spanned<Vec<Int>>, ctx: &Ctx<'_>) -> Result<Vec<usize>> {
    if list.get_ref().is_empty() {
        return Err(ctx.invalid(&list.span(), "dataplane.lcores", "at least one CPU core id"));
    }
    let mut ids: Vec<usize> = Vec::with_capacity(list.get_ref().len());
    for (i, v) in list.get_ref().iter().enumerate() {
        let path = format!("dataplane.lcores[{i}]");
        let id: usize = ctx.int(v, &path, schema::LCORE_ID)?;
        if let Some(first) = ids.iter().position(|&other| other == id) {
            return Err(ctx.invalid_msg(
                &v.span(),
                &path,
                format!("expected distinct CPU core ids, got {id} again (first at dataplane.lcores[{first}])"),
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn ring_size(v: &Option<Int>, path: &str, ctx: &Ctx<'_>) -> Result<u32> {
    let Some(v) = v else {
        return Ok(Dataplane::default().tx_ring_size);
    };
    let expected = format!("a power of two in {}", schema::RING_SIZE);
    let size: u32 = ctx.int_with(v, path, schema::RING_SIZE, &expected)?;
    if size.is_power_of_two() {
        Ok(size)
    } else {
        Err(ctx.invalid(&v.span(), path, &expected))
    }
}

fn control(raw: &RawControl, ctx: &Ctx<'_>) -> Result<Control> {
    let d = Control::default();
    Ok(Control {
        join_timeout_ms: ctx.int_or(
            &raw.join_timeout_ms,
            "control.join_timeout_ms",
            schema::JOIN_TIMEOUT_MS,
            d.join_timeout_ms,
        )?,
        backoff_max_s: ctx.int_or(
            &raw.backoff_max_s,
            "control.backoff_max_s",
            schema::BACKOFF_MAX_S,
            d.backoff_max_s,
        )?,
        sendonly_gc_s: ctx.int_or(
            &raw.sendonly_gc_s,
            "control.sendonly_gc_s",
            schema::SENDONLY_GC_S,
            d.sendonly_gc_s,
        )?,
        request_queue: ctx.int_or(
            &raw.request_queue,
            "control.request_queue",
            schema::REQUEST_QUEUE,
            d.request_queue,
        )?,
        neigh_queue: ctx.int_or(
            &raw.neigh_queue,
            "control.neigh_queue",
            schema::NEIGH_QUEUE,
            d.neigh_queue,
        )?,
    })
}

fn run(raw: &RawRun, ctx: &Ctx<'_>) -> Result<Run> {
    let d = Run::default();
    Ok(Run {
        duration_s: ctx.float_or(
            &raw.duration_s,
            "run.duration_s",
            schema::DURATION_S,
            d.duration_s,
        )?,
        stats_interval_ms: ctx.int_or(
            &raw.stats_interval_ms,
            "run.stats_interval_ms",
            schema::STATS_INTERVAL_MS,
            d.stats_interval_ms,
        )?,
    })
}
