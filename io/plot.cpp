#include "io/plot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "io/atomic_file.h"
#include "kernels/error.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

// A gnuplot single-quoted string ('' is a quote inside).
std::string gq(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// A shell single-quoted word.
std::string sq(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "NaN";  // gnuplot leaves the point out
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// A scratch folder for data and script, removed at the end.
class Scratch {
 public:
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "qisa-plot-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw Error(std::string("cannot create a scratch folder for gnuplot: ") + std::strerror(errno), "check $TMPDIR");
    path_ = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw Error("cannot write '" + path + "'", "check $TMPDIR (disk full?)");
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string header(int panels, const std::string& out) {
  const int w = 560 * std::max(1, panels) + 80, h = 480;
  return "set terminal pngcairo size " + std::to_string(w) + "," + std::to_string(h) + " noenhanced font 'sans,10'\n" +
         "set output " + gq(out) + "\n" + "set multiplot layout 1," + std::to_string(std::max(1, panels)) + "\n";
}

// gnuplot's own reason for a failure, from its stderr: the text after '"script" line N: ' of
// its last error, else its last line; and a hint that fits it.
std::pair<std::string, std::string> gnuplot_failure(int status, const std::string& stderr_text, const std::string& gnuplot) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : stderr_text + "\n") {
    if (c != '\n') { cur += c; continue; }
    while (!cur.empty() && (cur.back() == ' ' || cur.back() == '\r')) cur.pop_back();
    if (!cur.empty()) lines.push_back(cur);
    cur.clear();
  }
  std::string reason = lines.empty() ? "no message" : lines.back();
  for (const std::string& l : lines)
    if (const auto at = l.find("\" line "); at != std::string::npos && l.find(": ", at) != std::string::npos)
      reason = l.substr(l.find(": ", at) + 2);
  if (reason.size() > 300) reason = reason.substr(0, 300) + "...";
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::string hint = "qisa's plot script needs gnuplot 5 with the pngcairo terminal (apt-get install gnuplot-nox)";
  if (code == 126 || code == 127)
    hint = "'" + gnuplot + "' does not run: install gnuplot-nox, or point QISA_GNUPLOT at a working gnuplot";
  else if (reason.find("terminal") != std::string::npos)
    hint = "this gnuplot lacks the pngcairo terminal: install gnuplot-nox (not gnuplot-nox-minimal)";
  else if (reason.find("cannot open") != std::string::npos || reason.find("Permission") != std::string::npos)
    hint = "check that the PNG's folder is writable and the disk is not full";
  return {"gnuplot (" + gnuplot + ") exited with status " + std::to_string(code) + ": " + reason, hint};
}

// Runs the script; the PNG lands in an atomic temporary beside `png` and is committed when valid.
// The PNG's folder must exist: a typo in --out must not create folders.
void render(const Scratch& scratch, const std::string& script_body, int panels, const std::string& png) {
  const std::string gnuplot = find_gnuplot();
  QISA_CHECK(!gnuplot.empty(), "cannot plot '" + png + "': gnuplot is not installed (no `gnuplot` on PATH, QISA_GNUPLOT unset)",
             "apt-get install gnuplot-nox (cluster/setup.sh installs it)");
  const fs::path parent = fs::path(png).parent_path();
  std::error_code ec;
  QISA_CHECK(parent.empty() || fs::is_directory(parent, ec),
             "cannot write '" + png + "': folder '" + parent.string() + "' does not exist",
             "create it first (mkdir -p " + parent.string() + "), or fix the path");
  AtomicFile out(png);
  const std::string script = scratch.file("plot.gp"), err = scratch.file("gnuplot.err");
  write(script, header(panels, out.tmp_path()) + script_body + "unset multiplot\nset output\n");
  const std::string cmd = sq(gnuplot) + " " + sq(script) + " > /dev/null 2> " + sq(err);
  const int status = std::system(cmd.c_str());
  if (status != 0 || !fs::exists(out.tmp_path())) {
    const auto [what, hint] = gnuplot_failure(status, read_all(err), gnuplot);
    throw Error("cannot plot '" + png + "': " + what, hint);
  }
  png_size(out.tmp_path());  // a PNG, complete
  out.commit();
}

}  // namespace

std::string find_gnuplot() {
  if (const char* e = std::getenv("QISA_GNUPLOT"); e && *e) return e;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (fs::path(dir.empty() ? "." : dir) / "gnuplot").string();
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

void plot_lines(const std::vector<LinePanel>& panels, const std::string& png) {
  QISA_CHECK(!panels.empty(), "nothing to plot for '" + png + "'", "pass at least one run");
  Scratch scratch;
  std::string body;
  for (size_t p = 0; p < panels.size(); ++p) {
    const LinePanel& panel = panels[p];
    body += "reset\nset grid\nset key top right\nset title " + gq(panel.title) + "\nset xlabel " + gq(panel.xlabel) +
            "\nset ylabel " + gq(panel.ylabel) + "\n" + (panel.log_y ? "set logscale y\n" : "") +
            (panel.log_x ? "set logscale x\nset format x '%.0e'\n" : "");
    std::string plot;
    for (size_t s = 0; s < panel.series.size(); ++s) {
      const Series& series = panel.series[s];
      const bool bars = !series.err.empty();
      std::string data;
      for (size_t i = 0; i < series.x.size() && i < series.y.size(); ++i)
        if ((!panel.log_y || series.y[i] > 0) && (!panel.log_x || series.x[i] > 0))
          data += num(series.x[i]) + " " + num(series.y[i]) +
                  (bars ? " " + num(i < series.err.size() && std::isfinite(series.err[i]) ? series.err[i] : 0.0) : "") + "\n";
      if (data.empty()) data = "NaN NaN\n";  // keeps the legend entry; gnuplot warns, does not fail
      const std::string file = scratch.file("p" + std::to_string(p) + "_s" + std::to_string(s) + ".dat");
      write(file, data);
      plot += std::string(plot.empty() ? "plot " : ", \\\n     ") + gq(file) + (bars ? " using 1:2:3 with yerrorlines pt 7 ps 0.6" :
              std::string(" using 1:2 with ") + (series.points ? "linespoints pt 7 ps 0.6" : "lines")) + " lw 1.5 lc " + std::to_string(s + 1) +
              " title " + gq(series.label);
    }
    body += (plot.empty() ? "plot NaN notitle" : plot) + "\n";
  }
  render(scratch, body, static_cast<int>(panels.size()), png);
}

void plot_bars(const std::vector<BarPanel>& panels, const std::string& png) {
  QISA_CHECK(!panels.empty(), "nothing to plot for '" + png + "'", "pass a results table with rows");
  Scratch scratch;
  std::string body;
  for (size_t p = 0; p < panels.size(); ++p) {
    const BarPanel& panel = panels[p];
    // rows: "category" mean_1 err_1 mean_2 err_2 ...
    std::string data;
    for (size_t c = 0; c < panel.categories.size(); ++c) {
      std::string name = panel.categories[c];
      for (char& ch : name)
        if (ch == '"') ch = '\'';
      data += "\"" + name + "\"";
      for (size_t b = 0; b < panel.bars.size(); ++b) data += " " + num(panel.mean[b][c]) + " " + num(panel.err[b][c]);
      data += "\n";
    }
    const std::string file = scratch.file("bars" + std::to_string(p) + ".dat");
    write(file, data);
    body += "reset\nset grid ytics\nset key top right\nset style data histograms\n"
            "set style histogram errorbars gap 1 lw 1\nset style fill solid 0.75 border -1\nset boxwidth 0.9\n"
            "set yrange [0:*]\nset title " + gq(panel.title) + "\nset ylabel " + gq(panel.ylabel) + "\n";
    std::string plot;
    for (size_t b = 0; b < panel.bars.size(); ++b)
      plot += std::string(plot.empty() ? "plot " : ", \\\n     ") + gq(file) + " using " + std::to_string(2 + 2 * b) + ":" +
              std::to_string(3 + 2 * b) + (b == 0 ? ":xtic(1)" : "") + " lc " + std::to_string(b + 1) + " title " +
              gq(panel.bars[b]);
    body += (plot.empty() ? "plot NaN notitle" : plot) + "\n";
  }
  render(scratch, body, static_cast<int>(panels.size()), png);
}

std::pair<int, int> png_size(const std::string& path) {
  const std::string bytes = read_all(path);
  static const unsigned char kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
           static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
  };
  QISA_CHECK(bytes.size() >= 8 + 25 + 12 && std::memcmp(bytes.data(), kSig, 8) == 0,
             "'" + path + "' is not a PNG file (" + std::to_string(bytes.size()) + " bytes, no PNG signature)",
             "was it written by gnuplot's pngcairo terminal?");
  QISA_CHECK(be32(8) == 13 && bytes.compare(12, 4, "IHDR") == 0, "'" + path + "' is not a PNG file: no IHDR chunk first",
             "the file is damaged");
  QISA_CHECK(bytes.compare(bytes.size() - 8, 4, "IEND") == 0, "'" + path + "' is cut short: no IEND chunk at its end",
             "the file was not written completely");
  const int w = static_cast<int>(be32(16)), h = static_cast<int>(be32(20));
  QISA_CHECK(w > 0 && h > 0, "'" + path + "' has an empty image (" + std::to_string(w) + "x" + std::to_string(h) + ")",
             "the file is damaged");
  return {w, h};
}

}  // namespace qisa
