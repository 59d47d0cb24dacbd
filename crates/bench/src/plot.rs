//! Latency over time and the percentile curve, drawn to SVG so that a
//! regression is visible at a glance.

use std::path::Path;

use plotters::prelude::*;

use crate::BenchError;
use crate::report::Report;

/// What drawing to an SVG file can fail with.
type DrawingError = DrawingAreaErrorKind<std::io::Error>;

/// Draws two panels: mean and max latency per second of the run, and
/// latency by percentile.
pub(crate) fn draw(report: &Report, path: &Path) -> Result<(), BenchError> {
    let fail = |e: DrawingError| BenchError::Plot {
        path: path.display().to_string(),
        source: Box::new(e),
    };
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let (top, bottom) = root.split_vertically(400);

    let ms = |us: f64| us / 1000.0;
    let seconds = report.timeline.len().max(1) as f64;
    let worst = report
        .timeline
        .iter()
        .map(|s| ms(s.max_us as f64))
        .fold(0.1, f64::max);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{:?}: latency over time", report.workload),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..seconds, 0f64..worst * 1.1)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("ms")
        .draw()
        .map_err(fail)?;
    let mean = report
        .timeline
        .iter()
        .map(|s| (s.second as f64, ms(s.mean_us)));
    chart
        .draw_series(LineSeries::new(mean, &BLUE))
        .map_err(fail)?
        .label("mean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let max = report
        .timeline
        .iter()
        .map(|s| (s.second as f64, ms(s.max_us as f64)));
    chart
        .draw_series(LineSeries::new(max, &RED))
        .map_err(fail)?
        .label("max")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;

    let highest = report
        .percentiles
        .iter()
        .map(|&(_, us)| ms(us as f64))
        .fold(0.1, f64::max);
    let mut curve = ChartBuilder::on(&bottom)
        .caption("latency by percentile", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..100f64, 0f64..highest * 1.1)
        .map_err(fail)?;
    curve
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .draw()
        .map_err(fail)?;
    let points = report.percentiles.iter().map(|&(p, us)| (p, ms(us as f64)));
    curve
        .draw_series(LineSeries::new(points.clone(), &BLUE))
        .map_err(fail)?;
    curve
        .draw_series(points.map(|p| Circle::new(p, 3, BLUE.filled())))
        .map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}
