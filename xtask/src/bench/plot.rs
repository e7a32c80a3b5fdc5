//! bench/detection.png with plotters: every detection trial of both implementations
//! against the RFC value, on top as absolute times (log scale), below as the distance
//! from the RFC value.
//!
//! Text needs a font, and plotters' system-font path needs fontconfig; the bench uses
//! plotters' `ab_glyph` feature instead and reads DejaVu Sans from Debian's
//! fonts-dejavu-core (which `cargo xtask setup` installs) at run time.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::detection::Detection;
use super::node::Impl;

pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const VIGIL: RGBColor = RGBColor(31, 119, 180);
const KEEPALIVED: RGBColor = RGBColor(214, 39, 40);

fn color(imp: Impl) -> RGBColor {
    match imp {
        Impl::Vigil => VIGIL,
        Impl::Keepalived => KEEPALIVED,
    }
}

fn offset(imp: Impl) -> f64 {
    match imp {
        Impl::Vigil => -0.17,
        Impl::Keepalived => 0.17,
    }
}

fn register_font() -> anyhow::Result<()> {
    let bytes = std::fs::read(FONT)
        .with_context(|| format!("reading {FONT} (Debian package fonts-dejavu-core)"))?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT} is not a usable font"))
}

fn label(d: &Detection) -> String {
    let iv = if d.interval_ms >= 1000 {
        format!("{} s", d.interval_ms / 1000)
    } else {
        format!("{} ms", d.interval_ms)
    };
    let busy = if d.busy_loops > 0 {
        format!(", {} busy loops", d.busy_loops)
    } else {
        String::new()
    };
    format!("{iv}, down_timer_adverts {}{busy}", d.down_adverts)
}

/// Draws the plot; `subtitle` names the run (date, machine, trials).
pub fn detection_png(path: &Path, det: &[Detection], subtitle: &str) -> anyhow::Result<()> {
    register_font()?;
    draw(path, det, subtitle).map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

fn draw(path: &Path, det: &[Detection], subtitle: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Failure detection: MASTER's link cut → new MASTER's first advert",
        ("sans-serif", 26),
    )?;
    let (top, bottom) = root.split_vertically(470);
    let groups = det.len().max(1);
    let labels: Vec<String> = det.iter().map(label).collect();
    let xfmt = |x: &f64| {
        let r = x.round();
        if (x - r).abs() < 1e-6 && r >= 0.0 {
            labels.get(r as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let xr = -0.5..groups as f64 - 0.5;

    // Top: absolute, log scale.
    let all: Vec<f64> = det
        .iter()
        .flat_map(|d| d.trials.values().flatten().copied().chain([d.rfc_ms]))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).min(10.0) * 0.7;
    let hi = all.iter().copied().fold(0.0, f64::max).max(20.0) * 1.4;
    let mut chart = ChartBuilder::on(&top)
        .caption(subtitle, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(xr.clone(), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups)
        .x_label_formatter(&xfmt)
        .y_desc("detection time, ms (log)")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    chart
        .draw_series(det.iter().enumerate().map(|(g, d)| {
            PathElement::new(
                vec![(g as f64 - 0.4, d.rfc_ms), (g as f64 + 0.4, d.rfc_ms)],
                BLACK.stroke_width(2),
            )
        }))?
        .label("RFC 5798 Master_Down_Interval")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for imp in [Impl::Vigil, Impl::Keepalived] {
        let c = color(imp);
        let pts: Vec<(f64, f64)> = det
            .iter()
            .enumerate()
            .flat_map(|(g, d)| {
                let n = d.trials.get(&imp).map_or(0, Vec::len).max(1);
                d.trials
                    .get(&imp)
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(move |(k, v)| {
                        // Spread the trials a little sideways so they do not hide each other.
                        let jitter = (k as f64 / n as f64 - 0.5) * 0.12;
                        (g as f64 + offset(imp) + jitter, *v)
                    })
            })
            .collect();
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.mix(0.55).filled())))?
            .label(imp.name())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Bottom: distance from the RFC value, with the ±1 ms goal band.
    let devs: Vec<f64> = det
        .iter()
        .flat_map(|d| d.trials.values().flatten().map(move |v| v - d.rfc_ms))
        .collect();
    let cap = 50.0;
    let dmax = devs.iter().copied().fold(2.0, f64::max).min(cap) * 1.15;
    let dmin = devs.iter().copied().fold(-2.0, f64::min).max(-cap) * 1.15;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "distance from the RFC value (ms); band: the goal, within 1 ms; triangles: clipped at ±50 ms",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(xr, dmin..dmax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups)
        .x_label_formatter(&xfmt)
        .y_desc("detection − RFC value, ms")
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(-0.5, -1.0), (groups as f64 - 0.5, 1.0)],
        RGBColor(44, 160, 44).mix(0.15).filled(),
    )))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, 0.0), (groups as f64 - 0.5, 0.0)],
        BLACK.stroke_width(1),
    )))?;
    for imp in [Impl::Vigil, Impl::Keepalived] {
        let c = color(imp);
        for (g, d) in det.iter().enumerate() {
            let vals = d.trials.get(&imp).cloned().unwrap_or_default();
            let n = vals.len().max(1);
            for (k, v) in vals.iter().enumerate() {
                let x = g as f64 + offset(imp) + (k as f64 / n as f64 - 0.5) * 0.12;
                let dv = v - d.rfc_ms;
                if dv > cap || dv < -cap {
                    let y = dv.clamp(dmin * 0.97, dmax * 0.97);
                    chart.draw_series(std::iter::once(TriangleMarker::new(
                        (x, y),
                        6,
                        c.filled(),
                    )))?;
                } else {
                    chart.draw_series(std::iter::once(Circle::new(
                        (x, dv),
                        4,
                        c.mix(0.55).filled(),
                    )))?;
                }
            }
        }
    }
    root.present()?;
    Ok(())
}
