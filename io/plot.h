// PNG plots through gnuplot (Debian package gnuplot-nox, pngcairo terminal): we write the
// data and a script to a scratch folder, run gnuplot, check that a PNG came out, and move it
// into place atomically. No plotting code of our own beyond that.
#pragma once
#include <string>
#include <vector>

namespace qisa {

struct Series {
  std::string label;
  std::vector<double> x, y;
  bool points = false;  // markers with lines (sparse series such as periodic evaluations)
  std::vector<double> err;  // half-height of an error bar at each point (empty: no bars)
};

struct LinePanel {
  std::string title, xlabel, ylabel;
  bool log_y = false;
  std::vector<Series> series;
  bool log_x = false;
};

// Grouped bars with error bars: one group per category (x axis), one bar per series.
struct BarPanel {
  std::string title, ylabel;
  std::vector<std::string> categories;    // e.g. "val CE", "val CER"
  std::vector<std::string> bars;          // legend entries, e.g. "qisa_causal"
  std::vector<std::vector<double>> mean;  // [bar][category]
  std::vector<std::vector<double>> err;   // [bar][category]: half-height of the error bar (0: none)
};

// The gnuplot executable: $QISA_GNUPLOT, else `gnuplot` on PATH; "" when there is none.
std::string find_gnuplot();

// Panels side by side in one PNG. Throws qisa::Error (gnuplot missing, its error output,
// no PNG written); `png` is only replaced by a complete file.
void plot_lines(const std::vector<LinePanel>& panels, const std::string& png);
void plot_bars(const std::vector<BarPanel>& panels, const std::string& png);

// Width and height of a PNG file; throws qisa::Error naming the file when it is not a PNG
// (signature, IHDR chunk) or is cut short (no IEND chunk at the end).
std::pair<int, int> png_size(const std::string& path);

}  // namespace qisa
