// Small SVG line charts (loss curves, score against KV size): no dependencies, one file out.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace ecomla {

struct PlotSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in order
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_y = false;  // e.g. losses that fall by orders of magnitude
  int width = 720, height = 420;
};

// The chart as an SVG document. Series without points are skipped; an empty chart still
// renders its frame and title.
std::string svg_line_chart(const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace ecomla
