//! `--plot FILE.svg|png`: the rate over time of every phase (summed over
//! ports) and each receiver's latency distribution, drawn with plotters.
//! PNG text uses an embedded font (DejaVu Sans, a subset; `fonts/LICENSE`),
//! so no system font library is needed.

use super::outcome::RunOutcome;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

const SIZE: (u32, u32) = (1100, 900);
const FONT: &[u8] = include_bytes!("fonts/DejaVuSans-subset.ttf");

/// Makes "sans-serif" the embedded font for text layout and bitmap drawing.
fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the embedded plot font does not load".to_string());
    });
    result
}

/// Percentile as "nines": 0.9 → 1, 0.99 → 2, … (1.0 drawn at 5).
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        5.0
    } else {
        (-(1.0 - q).log10()).min(5.0)
    }
}

fn nines_label(x: &f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-*x));
    if *x >= 5.0 {
        "max".into()
    } else {
        format!("p{}", (pct * 1000.0).round() / 1000.0)
    }
}

/// Writes the plot as SVG or PNG, by the file's extension.
pub fn write(r: &RunOutcome, path: &Path) -> Result<(), String> {
    let e = |x: String| format!("--plot {}: {x}", path.display());
    register_font().map_err(e)?;
    match path.extension().and_then(|x| x.to_str()) {
        Some("svg") => draw(r, SVGBackend::new(path, SIZE).into_drawing_area()).map_err(e),
        Some("png") => {
            let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
            draw(
                r,
                BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
            )
            .map_err(e)?;
            write_png(path, &rgb).map_err(e)
        }
        _ => Err(e("expected a .svg or .png file".into())),
    }
}

fn write_png(path: &Path, rgb: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|x| x.to_string())?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|x| x.to_string())?;
    w.write_image_data(rgb).map_err(|x| x.to_string())?;
    w.finish().map_err(|x| x.to_string())
}

fn draw<DB: DrawingBackend>(r: &RunOutcome, root: DrawingArea<DB, Shift>) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (top, bottom) = root.split_vertically(430);

    // Phases one after the other on one time axis.
    let mut tx = Vec::new();
    let mut rx = Vec::new();
    let mut offset = 0.0;
    for p in &r.phases {
        for s in &p.timeline {
            tx.push((offset + s.t, s.tx_pps / 1e6));
            rx.push((offset + s.t, s.rx_pps / 1e6));
        }
        offset += p.seconds;
    }
    let tmax = offset.max(0.1);
    let ymax = tx
        .iter()
        .chain(&rx)
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    let mut c = ChartBuilder::on(&top)
        .caption(
            format!("pktgen on the {} provider: rate", r.provider),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..tmax, 0.0..ymax)
        .map_err(e)?;
    c.configure_mesh()
        .x_desc("seconds")
        .y_desc("Mpps (all ports)")
        .draw()
        .map_err(e)?;
    c.draw_series(LineSeries::new(tx, &BLUE))
        .map_err(e)?
        .label("tx")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(rx, &RED))
        .map_err(e)?
        .label("rx")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(e)?;

    let curves: Vec<(String, Vec<(f64, f64)>)> = r
        .phases
        .iter()
        .flat_map(|p| {
            p.streams.iter().flat_map(move |s| {
                s.receivers
                    .iter()
                    .filter(|rc| !rc.latency_curve.is_empty())
                    .map(move |rc| {
                        let pts = rc
                            .latency_curve
                            .iter()
                            .map(|&(q, ns)| (nines(q), ns as f64 / 1e3))
                            .collect();
                        (format!("{} {}→{} one-way", p.name, s.name, rc.iface), pts)
                    })
                    .chain(s.rtt.iter().filter(|r| !r.curve.is_empty()).map(move |r| {
                        let pts = r
                            .curve
                            .iter()
                            .map(|&(q, ns)| (nines(q), ns as f64 / 1e3))
                            .collect();
                        (format!("{} {} round trip", p.name, s.name), pts)
                    }))
            })
        })
        .collect();
    let lmax = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(0.01);
    let mut c = ChartBuilder::on(&bottom)
        .caption("latency distribution", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..5.0, (0.01..lmax * 2.0).log_scale())
        .map_err(e)?;
    c.configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_label_formatter(&nines_label)
        .draw()
        .map_err(e)?;
    for (i, (label, pts)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(pts, color))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
