//! The plot of the headline: notify cost against catalog size, written as
//! an SVG beside results.json. Lines: ours and the floor (the by-hand
//! reload), both seen by a session held open; the same two seen by a fresh
//! session per poll (dashed); the pre-fix catalog pass. Beside them, at the
//! smallest size, the noisy-neighbour pair: median and p90 of ours and of
//! the floor under the same neighbour.

use std::path::Path;

use plotters::prelude::*;

use crate::stats::CaseResult;

/// What to read from a row of the notify suite.
#[derive(Clone, Copy)]
enum Pick {
    Ours,
    Floor,
    FreshOurs,
    FreshFloor,
}

/// (roles, median ms) of the rows of `suite`.
fn points(results: &[CaseResult], suite: &str, pick: Pick) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = results
        .iter()
        .filter(|r| r.suite == suite)
        .filter_map(|r| {
            let roles = r.extra["roles"].as_f64()?;
            let ms = match pick {
                Pick::Ours => r.ours.median_ms,
                Pick::Floor => r.floor?.median_ms,
                Pick::FreshOurs => r.extra["fresh_session"]["ours_ms"].as_f64()?,
                Pick::FreshFloor => r.extra["fresh_session"]["floor_ms"].as_f64()?,
            };
            Some((roles.max(1.0), ms))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// The noisy-neighbour pair: (roles, median, p90) of ours and of the floor.
fn neighbour(results: &[CaseResult]) -> Option<[(f64, f64, f64); 2]> {
    let r = results.iter().find(|r| r.suite == "notify_neighbour")?;
    let roles = r.extra["roles"].as_f64()?.max(1.0);
    let floor = r.floor?;
    Some([
        (roles, r.ours.median_ms, r.ours.p90_ms),
        (roles, floor.median_ms, floor.p90_ms),
    ])
}

pub fn notify_cost(results: &[CaseResult], path: &Path) -> anyhow::Result<()> {
    let suite = "notify_reconfigure";
    let ours = points(results, suite, Pick::Ours);
    let floor = points(results, suite, Pick::Floor);
    let fresh_ours = points(results, suite, Pick::FreshOurs);
    let fresh_floor = points(results, suite, Pick::FreshFloor);
    let prefix = points(results, "prefix_headline", Pick::Floor);
    let noisy = neighbour(results);
    let mut all: Vec<(f64, f64)> = ours
        .iter()
        .chain(&floor)
        .chain(&fresh_ours)
        .chain(&fresh_floor)
        .chain(&prefix)
        .copied()
        .collect();
    for (x, m, p) in noisy.iter().flatten() {
        all.extend([(*x, *m), (*x, *p)]);
    }
    anyhow::ensure!(!all.is_empty(), "no notify results to plot");
    let x_max = all.iter().map(|p| p.0).fold(10.0, f64::max) * 2.0;
    let x_min = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min) / 2.0;
    let y_max = all.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let y_min = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .max(0.01)
        / 2.0;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "POST /configure notify: time until a client sees the new value (100 databases)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("roles in the spec")
        .y_desc("median ms, log scale")
        .draw()?;
    let lines = [
        ("compute_ctl notify, seen by a held session", BLUE, &ours),
        (
            "floor: write file + rename + SIGHUP by hand, held session",
            GREEN,
            &floor,
        ),
        (
            "pre-fix: reload + ALTER ROLE per role + session per db",
            RED,
            &prefix,
        ),
    ];
    for (label, color, pts) in lines {
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
    let dashed = [
        (
            "compute_ctl, seen by a fresh session per poll",
            BLUE,
            &fresh_ours,
        ),
        (
            "by hand, seen by a fresh session per poll",
            GREEN,
            &fresh_floor,
        ),
    ];
    for (label, color, pts) in dashed {
        if pts.is_empty() {
            continue;
        }
        let style = color.mix(0.6).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(pts.iter().copied(), 6, 4, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(
            pts.iter()
                .map(|p| TriangleMarker::new(*p, 5, color.mix(0.6).filled())),
        )?;
    }
    if let Some([o, f]) = noisy {
        // Median (filled) to p90 (open), a little apart so both show.
        for ((x, median, p90), shift, color, label) in [
            (
                o,
                0.93,
                MAGENTA,
                "under an fsync neighbour: ours, median to p90",
            ),
            (
                f,
                1.07,
                CYAN,
                "under the same neighbour: floor, median to p90",
            ),
        ] {
            let x = x * shift;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, median), (x, p90)],
                    color.stroke_width(2),
                )))?
                .label(label)
                .legend(move |(lx, ly)| {
                    Rectangle::new([(lx, ly - 4), (lx + 20, ly + 4)], color.filled())
                });
            chart.draw_series([
                Rectangle::new(
                    [(x * 0.97, median * 0.97), (x * 1.03, median * 1.03)],
                    color.filled(),
                ),
                Rectangle::new(
                    [(x * 0.97, p90 * 0.97), (x * 1.03, p90 * 1.03)],
                    color.stroke_width(2),
                ),
            ])?;
        }
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
