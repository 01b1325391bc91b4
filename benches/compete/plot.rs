//! The plot of the headline: notify cost against catalog size, ours vs the
//! by-hand reload floor vs the pre-fix catalog pass, written as an SVG
//! beside results.json.

use std::path::Path;

use plotters::prelude::*;

use crate::stats::CaseResult;

/// (roles, median ms) of the rows of `suite`, ours or floor.
fn points(results: &[CaseResult], suite: &str, floor: bool) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = results
        .iter()
        .filter(|r| r.suite == suite)
        .filter_map(|r| {
            let roles = r.extra["roles"].as_f64()?;
            let ms = if floor {
                r.floor?.median_ms
            } else {
                r.ours.median_ms
            };
            Some((roles.max(1.0), ms))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

pub fn notify_cost(results: &[CaseResult], path: &Path) -> anyhow::Result<()> {
    let ours = points(results, "notify_reconfigure", false);
    let floor = points(results, "notify_reconfigure", true);
    let prefix = points(results, "prefix_headline", true);
    let all: Vec<(f64, f64)> = ours.iter().chain(&floor).chain(&prefix).copied().collect();
    anyhow::ensure!(!all.is_empty(), "no notify results to plot");
    let x_max = all.iter().map(|p| p.0).fold(10.0, f64::max) * 2.0;
    let y_max = all.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let y_min = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .max(0.01)
        / 2.0;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "POST /configure notify: cost against catalog size (100 databases)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((5.0..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("roles in the spec")
        .y_desc("median ms, log scale")
        .draw()?;
    for (label, color, pts) in [
        ("compute_ctl notify (flag honoured)", BLUE, &ours),
        ("floor: write config + SIGHUP by hand", GREEN, &floor),
        (
            "pre-fix: reload + ALTER ROLE per role + session per db",
            RED,
            &prefix,
        ),
    ] {
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
