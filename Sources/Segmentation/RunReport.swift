import Foundation
import MicrographIO
import NanoTensor
import ParticleAnalysis

/// The files that describe a whole `segment` run: `particles.csv` (every particle of every image,
/// one row each, the image's name first), `summary.json` (settings and one entry per image),
/// `size_histogram.png` (equivalent diameters) and `report.html` (one self-contained page).
public struct RunReport {
    public var summaries: [ImageSummary]
    public var settings: [String: String]
    /// The inputs the run could not segment, each with the line that said why: listed in
    /// `summary.json` (`failed`) and at the top of `report.html`, so a report read later does
    /// not pass for the whole batch.
    public var failures: [Failure]

    /// An input that failed and why (`<file>: <reason>`, as the run printed it).
    public struct Failure: Codable, Equatable, Sendable {
        public var input: String
        public var error: String
        public init(input: String, error: String) { self.input = input; self.error = error }
    }

    public init(summaries: [ImageSummary], settings: [String: String], failures: [Failure] = []) {
        self.summaries = summaries; self.settings = settings; self.failures = failures
    }

    struct SummaryFile: Codable {
        var settings: [String: String]
        var images: [ImageSummary]
        /// The run's size statistics (absent from files written before they were added).
        var sizes: SizeStatistics?
        /// The inputs that failed (absent from files written before they were listed).
        var failed: [Failure]?
    }

    /// The equivalent diameters of a whole run's particles not cut by the border, in nm where
    /// any image is calibrated (the uncalibrated images' particles then left out), else in px.
    public struct SizeStatistics: Codable, Equatable, Sendable {
        public var unit: String
        /// Particles of the run in all, those whose sizes these are, and those left out: cut by
        /// the border, in images without a pixel size (when the unit is nm).
        public var particles: Int, measured: Int, cutByBorder: Int, uncalibrated: Int
        public var mean: Double?, sd: Double?, median: Double?
        public var p10: Double?, p90: Double?, min: Double?, max: Double?

        enum CodingKeys: String, CodingKey {
            case unit, particles, measured, cutByBorder = "cut_by_border", uncalibrated, mean, sd, median, p10, p90, min, max
        }

        public init(_ diameters: [Double], unit: String, particles: Int, cutByBorder: Int = 0, uncalibrated: Int = 0) {
            self.unit = unit; self.particles = particles; measured = diameters.count
            self.cutByBorder = cutByBorder; self.uncalibrated = uncalibrated
            let v = diameters.sorted()
            guard !v.isEmpty else { return }
            let m = v.reduce(0, +) / Double(v.count)
            mean = m
            sd = v.count > 1 ? (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)).squareRoot() : nil
            // Linear between order statistics (numpy's default percentile).
            func q(_ f: Double) -> Double {
                let x = f * Double(v.count - 1), i = Int(x.rounded(.down)), t = x - Double(i)
                return i + 1 < v.count ? v[i] + t * (v[i + 1] - v[i]) : v[i]
            }
            median = q(0.5); p10 = q(0.1); p90 = q(0.9); min = v.first; max = v.last
        }
    }

    /// Reads the `summary.json` of an earlier run (for `merge`).
    public static func read(_ dir: URL) throws -> RunReport {
        let url = dir.appendingPathComponent("summary.json")
        guard let data = try? Data(contentsOf: url) else { throw MicrographError(url: url, reason: "no such file (not a segment output folder?)") }
        guard let s = try? JSONDecoder().decode(SummaryFile.self, from: data) else {
            throw MicrographError(url: url, reason: "is not a NanoFind segment summary")
        }
        return RunReport(summaries: s.images, settings: s.settings, failures: s.failed ?? [])
    }

    /// The particle rows of every image, read back from the per-image CSVs: each from its own
    /// `folder`, where every table must be (`required`), or else an image without one is left out.
    func particleRows(folder: (String) -> URL, required: Bool) throws -> (header: String, rows: [(image: String, fields: [String])]) {
        var header = "image," + Particle.csvHeader.joined(separator: ",")
        var rows: [(String, [String])] = []
        for s in summaries {
            let url = folder(s.image).appendingPathComponent("\(s.image)_particles.csv")
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                if required { throw MicrographError(url: url, reason: "cannot be read, and its folder's summary.json lists image \(s.image)") }
                continue
            }
            let lines = text.split(separator: "\n")
            if let first = lines.first { header = "image," + first }
            for line in lines.dropFirst() { rows.append((s.image, line.split(separator: ",", omittingEmptySubsequences: false).map(String.init))) }
        }
        return (header, rows)
    }

    /// Writes the run's files into `dir`, reading each image's particle table and overlay from
    /// `dir`, or with `sources` from the folder it gives for the image (`merge`: the folder
    /// whose summary.json lists it; there the table must be). Every file is made before any is
    /// written, and they are written together (`writeTogether`): a table that cannot be drawn (a
    /// size edited to `nan`, say) or a full disk leaves the folder as it was, not half replaced.
    public func write(into dir: URL, sources: [String: URL]? = nil) throws {
        let summaries = self.summaries.sorted { naturalOrder($0.image, $1.image) }
        let folder = { (image: String) in sources?[image] ?? dir }
        let failures = self.failures.sorted { naturalOrder($0.input, $1.input) }
        let (header, rows) = try RunReport(summaries: summaries, settings: settings).particleRows(folder: folder, required: sources != nil)
        let csv = ([header] + rows.map { ([csvField($0.image)] + $0.fields).joined(separator: ",") }).joined(separator: "\n") + "\n"
        let columns = header.split(separator: ",").map(String.init)
        let nmColumn = columns.firstIndex(of: "eq_diameter_nm"), pxColumn = columns.firstIndex(of: "eq_diameter_px")
        // (A size only counts as given when it reads as a finite number: one cell edited to "nan"
        // in an uncalibrated run does not switch the histogram to nm.)
        let inNm = rows.contains { r in nmColumn.map { $0 < r.fields.count + 1 && Double(r.fields[$0 - 1])?.isFinite == true } ?? false }
        let column = (inNm ? nmColumn : pxColumn).map { $0 - 1 }
        // The sizes of the particles not cut (touches_border 0), as each image's summary gives them.
        let cutColumn = columns.firstIndex(of: "touches_border").map { $0 - 1 }
        let whole = rows.filter { r in cutColumn.map { $0 < r.fields.count ? r.fields[$0] != "1" : true } ?? true }
        let sizes = whole.map { r in column.flatMap { $0 < r.fields.count ? r.fields[$0] : nil } ?? "" }
        // Only finite sizes are drawn: a table edited by hand may hold "nan" or text.
        let diameters = sizes.compactMap { Double($0) }.filter(\.isFinite)
        // In nm when any image is calibrated: then the uncalibrated images' particles are not in it, and the title says so.
        let cut = rows.count - whole.count
        let uncalibrated = sizes.filter(\.isEmpty).count, unreadable = whole.count - diameters.count - uncalibrated
        let notes = [cut > 0 ? "\(cut) cut by the border" : nil, uncalibrated > 0 ? "\(uncalibrated) uncalibrated" : nil,
                     unreadable > 0 ? "\(unreadable) unreadable" : nil].compactMap { $0 }
        let statistics = SizeStatistics(diameters, unit: inNm ? "nm" : "px", particles: rows.count, cutByBorder: cut, uncalibrated: uncalibrated)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let summaryJSON = try encoder.encode(SummaryFile(settings: settings, images: summaries, sizes: statistics, failed: failures))
        let histogram = sizeHistogram(diameters, unit: inNm ? "nm" : "px",
                                      note: notes.isEmpty ? nil : "\(rows.count - diameters.count) of \(rows.count) particles not shown (\(notes.joined(separator: ", ")))")
        let histogramPNG = try PNGWriter.encode(
            Micrograph(width: histogram.width, height: histogram.height, channels: 3, pixelType: .uint8, data: histogram.pixels, format: "png"))
        let html = ReportPage(summaries: summaries, failures: failures, settings: settings, columns: columns, rows: rows,
                              histogramPNG: histogramPNG, sizes: statistics,
                              overlays: overlayThumbnails(summaries.map { ($0.image, folder($0.image).appendingPathComponent("\($0.image)_overlay.png")) },
                                                        linkedFrom: dir)).html
        try writeTogether([(dir.appendingPathComponent("particles.csv"), Array(csv.utf8)),
                           (dir.appendingPathComponent("summary.json"), Array(summaryJSON)),
                           (dir.appendingPathComponent("size_histogram.png"), histogramPNG),
                           (dir.appendingPathComponent("report.html"), Array(html.utf8))])
    }
}

/// Each image's overlay (its name and file) as the report shows it: a thumbnail
/// (`Overlay.thumbnail`) and the path of the full overlay relative to the report's folder; nil
/// where no overlay can be read. Made side by side, one image per CPU.
func overlayThumbnails(_ overlays: [(name: String, url: URL)], linkedFrom reportDir: URL) -> [String: (png: [UInt8], link: String)] {
    final class Results: @unchecked Sendable {
        var values: [(png: [UInt8], link: String)?]
        let lock = NSLock()
        init(_ n: Int) { values = Array(repeating: nil, count: n) }
    }
    let results = Results(overlays.count), urls = overlays.map(\.url)
    ThreadPool.sideBySide(urls.count) { k in  // Dispatch runs as many at once as there are CPUs
        let url = urls[k]
        guard let png = Overlay.thumbnail(of: url) else { return }
        let link = relativePath(of: url, from: reportDir)
        results.lock.lock(); results.values[k] = (png, link); results.lock.unlock()
    }
    var out: [String: (png: [UInt8], link: String)] = [:]
    for ((name, _), value) in zip(overlays, results.values) { if let value { out[name] = value } }
    return out
}

/// `file`'s path relative to the folder `dir` ("../b/x.png" from "a" to "b/x.png"), as a URL
/// path with each component percent-encoded (":" too, so a name like "grid:A1" is never read as
/// a URL scheme). Paths are taken as given, not through symlinks: a browser resolves ".." against
/// the path it opened the report by.
func relativePath(of file: URL, from dir: URL) -> String {
    let f = file.standardizedFileURL.pathComponents
    let d = dir.standardizedFileURL.pathComponents
    var common = 0
    while common < min(f.count - 1, d.count) && f[common] == d[common] { common += 1 }
    let parts = Array(repeating: "..", count: d.count - common) + f[common...]
    let allowed = CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/:"))
    return parts.map { $0.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0 }.joined(separator: "/")
}

extension Overlay {
    /// An overlay shrunk to at most `side` pixels on its longer side, as a palette PNG in the
    /// overlay's colours: a pixel shows the outline or id colour most of its box holds (so 1-pixel
    /// outlines survive the shrinking), else the box's mean grey. A 2048² overlay (3.7 MB) becomes
    /// a 512² thumbnail of a few hundred kB, so a report of many micrographs stays small enough to open.
    public static func thumbnail(of url: URL, side: Int = 512) -> [UInt8]? {
        guard let image = try? PNGReader.read(url), image.channels == 3, image.pixelType == .uint8,
              image.width > 0, image.height > 0 else { return nil }
        let w = image.width, h = image.height
        let step = max(1, (max(w, h) + side - 1) / side)
        let tw = (w + step - 1) / step, th = (h + step - 1) / step
        let top = Float(Overlay.greyLevels - 1)
        var indices = [UInt8](repeating: 0, count: tw * th)
        image.data.withUnsafeBufferPointer { rgb in
            for ty in 0..<th { for tx in 0..<tw {
                var grey = 0, greys = 0, outline = 0, label = 0
                for y in (ty * step)..<min(h, ty * step + step) { for x in (tx * step)..<min(w, tx * step + step) {
                    let i = 3 * (y * w + x), r = Int(rgb[i]), g = Int(rgb[i + 1]), b = Int(rgb[i + 2])
                    if r == g && g == b { grey += r; greys += 1; continue }
                    // The nearer of the two colours.
                    func distance2(_ index: UInt8) -> Int {
                        let c = Overlay.palette[Int(index)]
                        return (r - Int(c.0)) * (r - Int(c.0)) + (g - Int(c.1)) * (g - Int(c.1)) + (b - Int(c.2)) * (b - Int(c.2))
                    }
                    if distance2(Overlay.outline) <= distance2(Overlay.label) { outline += 1 } else { label += 1 }
                } }
                indices[ty * tw + tx] = outline + label == 0 ? UInt8((Float(grey) / Float(max(1, greys)) / 255 * top).rounded())
                    : (label > outline ? Overlay.label : Overlay.outline)
            } }
        }
        return try? PNGWriter.encodeIndexed(indices, width: tw, height: th, palette: Overlay.palette)
    }
}

/// A histogram of particle sizes with labelled axes.
func sizeHistogram(_ values: [Double], unit: String, note: String? = nil, width: Int = 640, height: Int = 400) -> Canvas {
    let values = values.filter(\.isFinite)  // a NaN or ±∞ has no bin
    var c = Canvas(width: width, height: height)
    let left = 60, right = width - 20, top = 40, bottom = height - 40
    c.text("equivalent diameter (\(unit)), \(values.count) particles", x: left, y: 12, scale: 2)
    if let note { c.text(note, x: left, y: 30) }
    c.line(Double(left), Double(bottom), Double(right), Double(bottom), Canvas.black)
    c.line(Double(left), Double(top), Double(left), Double(bottom), Canvas.black)
    guard let lo = values.min(), let hi = values.max() else { return c }
    let binCount = max(5, min(40, Int(Double(values.count).squareRoot() * 2)))
    // In halves, so that no difference overflows (sizes of opposite sign near ±1e308 in an edited table).
    let halfSpan = max(hi / 2 - lo / 2, 1e-9)
    var counts = [Int](repeating: 0, count: binCount)
    for v in values { counts[max(0, min(binCount - 1, Int((v / 2 - lo / 2) / halfSpan * Double(binCount))))] += 1 }
    let maxCount = max(1, counts.max() ?? 1)
    let bw = Double(right - left) / Double(binCount)
    for (i, n) in counts.enumerated() {
        let x0 = left + Int(Double(i) * bw) + 1, x1 = left + Int(Double(i + 1) * bw) - 1
        let y0 = bottom - Int(Double(n) / Double(maxCount) * Double(bottom - top))
        c.fill(x0: x0, y0: y0, x1: x1, y1: bottom, Canvas.blue)
    }
    c.text(String(format: "%.2f", lo), x: left, y: bottom + 8)
    let hiText = String(format: "%.2f", hi)
    c.text(hiText, x: right - Canvas.textWidth(hiText), y: bottom + 8)
    c.text("\(maxCount)", x: 8, y: top)
    c.text("0", x: 8, y: bottom - 7)
    return c
}

/// `report.html`: one self-contained page (images inline as data URIs, no network access).
struct ReportPage {
    var summaries: [ImageSummary]
    var failures: [RunReport.Failure]
    var settings: [String: String]
    var columns: [String]
    var rows: [(image: String, fields: [String])]
    var histogramPNG: [UInt8]
    var sizes: RunReport.SizeStatistics
    /// Per image: the overlay's thumbnail and the full overlay's path from the report.
    var overlays: [String: (png: [UInt8], link: String)]

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    func format(_ v: Double?, _ digits: Int = 2) -> String { v.map { Particle.fixed($0, digits: digits) } ?? "–" }

    /// The run's sizes in one sentence: what a caption or a methods section quotes.
    var sizesSentence: String {
        guard let mean = sizes.mean, let median = sizes.median else {
            guard sizes.particles > 0 else { return "" }
            let why = [sizes.cutByBorder > 0 ? "\(sizes.cutByBorder) cut by the border" : nil,
                       sizes.uncalibrated > 0 ? "\(sizes.uncalibrated) in images without a pixel size" : nil].compactMap { $0 }
            return " No particle's size is measured\(why.isEmpty ? "" : " (\(why.joined(separator: ", ")))")."
        }
        let u = sizes.unit
        let spread = sizes.sd.map { " ± \(format($0))" } ?? ""
        let range = (sizes.p10 != nil && sizes.p90 != nil && sizes.measured >= 10) ? "; 10–90 %: \(format(sizes.p10))–\(format(sizes.p90)) \(u)" : ""
        let which = (sizes.cutByBorder > 0 ? " not cut by the border" : "") + (sizes.uncalibrated > 0 ? " in calibrated images" : "")
        return " Equivalent diameter of the \(sizes.measured) particles\(which): mean\(spread.isEmpty ? "" : " ± SD") \(format(mean))\(spread) \(u), median \(format(median)) \(u)\(range)."
    }

    var html: String {
        let total = summaries.reduce(0) { $0 + $1.particles }
        var page = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>NanoFind report</title>
        <style>
        body{font-family:system-ui,sans-serif;margin:2em;color:#222} h1{margin-bottom:0.2em}
        .images{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0;width:320px}
        figure img{width:320px;height:auto;border:1px solid #ccc} figcaption{font-size:0.85em}
        table{border-collapse:collapse;font-size:0.85em} th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}
        th{background:#f0f0f0;cursor:pointer;position:sticky;top:0} td:first-child{text-align:left}
        </style></head><body>
        <h1>NanoFind report</h1>
        <p id="totals">\(summaries.count) images, \(total) particles.\(sizesSentence)</p>
        """
        if !failures.isEmpty {
            let n = failures.count
            page += "<p id=\"failed\"><b>\(n) input\(n == 1 ? "" : "s") could not be segmented</b> and \(n == 1 ? "is" : "are") in none of the figures below:</p><ul>"
            for f in failures { page += "<li>\(escape(f.error))</li>" }
            page += "</ul>\n"
        }
        page += "<h2>Settings</h2><table id=\"settings\">"
        for (k, v) in settings.sorted(by: { $0.key < $1.key }) { page += "<tr><td>\(escape(k))</td><td>\(escape(v))</td></tr>" }
        page += "</table>\n<h2>Images</h2><div class=\"images\">\n"
        for s in summaries {
            let img = overlays[s.image].map {
                "<a href=\"\(escape($0.link))\"><img alt=\"\(escape(s.image)) overlay\" src=\"data:image/png;base64,\(Data($0.png).base64EncodedString())\"></a>"
            } ?? ""
            page += """
            <figure>\(img)<figcaption><b>\(escape(s.image))</b>: \(s.particles) particles\(s.particlesCut.map { $0 > 0 ? " (\($0) cut by the border)" : "" } ?? ""), \(format(100 * s.areaFraction, 1)) % area,
            \(s.particlesCut.map { $0 > 0 ? "of the uncut, " : "" } ?? "")\(s.pixelSizeNm == nil
                ? "mean ⌀ \(format(s.meanEqDiameterPx)) px, median ⌀ \(format(s.medianEqDiameterPx)) px"
                : "mean ⌀ \(format(s.meanEqDiameterNm)) nm, median ⌀ \(format(s.medianEqDiameterNm)) nm"),
            \(s.pixelSizeNm.map { String(format: "%.4g nm/px", $0) } ?? "uncalibrated") (\(escape(s.pixelSizeSource)))\((s.notes ?? []).map { "<br><i class=\"note\">\(escape($0))</i>" }.joined())</figcaption></figure>

            """
        }
        page += "</div>\n<h2>Particle sizes</h2><img id=\"histogram\" alt=\"size histogram\" src=\"data:image/png;base64,\(Data(histogramPNG).base64EncodedString())\">\n"
        page += "<h2>Particles</h2><table id=\"particles\"><thead><tr>"
        for c in columns { page += "<th>\(escape(c))</th>" }
        page += "</tr></thead><tbody>\n"
        for r in rows { page += "<tr><td>\(escape(r.image))</td>" + r.fields.map { "<td>\(escape($0))</td>" }.joined() + "</tr>\n" }
        page += """
        </tbody></table>
        <script>
        window.addEventListener('load', function () {  // what a check of the page reads back
          var decoded = Array.from(document.images).filter(function (i) { return i.naturalWidth > 0; }).length;
          document.body.setAttribute('data-images-decoded', String(decoded));
          document.body.setAttribute('data-particle-rows', String(document.querySelectorAll('#particles tbody tr').length));
        });
        document.querySelectorAll('#particles th').forEach(function (th, col) {
          th.addEventListener('click', function () {
            var body = document.querySelector('#particles tbody');
            var rows = Array.from(body.rows), asc = th.dataset.asc !== '1';
            rows.sort(function (a, b) {
              // Numbers where the whole cell is one, else text with digit runs compared as numbers
              // (img_2 before img_10; 20240105_grid1 before 20240105_grid2).
              var x = a.cells[col].textContent, y = b.cells[col].textContent, number = /^-?\\d*\\.?\\d+(e[-+]?\\d+)?$/i;
              var d = (number.test(x) && number.test(y)) ? parseFloat(x) - parseFloat(y)
                : x.localeCompare(y, undefined, { numeric: true });
              return asc ? d : -d;
            });
            rows.forEach(function (r) { body.appendChild(r); });
            th.dataset.asc = asc ? '1' : '0';
          });
        });
        </script>
        </body></html>

        """
        return page
    }
}

/// A CSV field as RFC 4180 has it: quoted (inner quotes doubled) when it holds a comma, a quote
/// or a line break (an image named `grid,A1`), as it is otherwise.
public func csvField(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// Names in the order a person reads them: runs of digits compared as numbers (tilt_2 before
/// tilt_10), the rest as text.
public func naturalOrder(_ a: String, _ b: String) -> Bool {
    var i = a.unicodeScalars.makeIterator(), j = b.unicodeScalars.makeIterator()
    var x = i.next(), y = j.next()
    func digits(_ first: inout Unicode.Scalar?, _ it: inout String.UnicodeScalarView.Iterator) -> String {
        var run = ""
        while let c = first, c.properties.numericType == .decimal, c.isASCII { run.unicodeScalars.append(c); first = it.next() }
        return run
    }
    while let c = x, let d = y {
        let cd = c.isASCII && c.properties.numericType == .decimal, dd = d.isASCII && d.properties.numericType == .decimal
        if cd && dd {
            let m = digits(&x, &i), n = digits(&y, &j)
            let mt = m.drop { $0 == "0" }, nt = n.drop { $0 == "0" }
            if mt.count != nt.count { return mt.count < nt.count }
            if mt != nt { return mt < nt }
            if m.count != n.count { return m.count < n.count }
            continue
        }
        if c != d { return c.value < d.value }
        x = i.next(); y = j.next()
    }
    return x == nil && y != nil
}
