import ArgumentParser
import Foundation
import MicrographIO

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print size, pixel type, calibration and statistics of micrograph files.",
        discussion: """
            One block (or, with --json, one JSON object per line) for every image in every file. \
            A file that cannot be read gives one line `error: <file>: <reason>` on stderr and the \
            other files are still inspected. Exit status: 0 all read, 2 the only file given \
            failed, 1 some of several files failed.
            """)
    @Argument(help: "Micrograph files (MRC, TIFF, DM3/DM4, SER, EMD, PNG, NPY).") var files: [String]
    @Flag(help: "One JSON object per image.") var json = false

    func run() throws {
        var failures = 0
        for path in files {
            let url = URL(fileURLWithPath: path)
            do {
                let images = try IsolatedReader.open(url)
                for (index, image) in images.enumerated() {
                    let line = json ? jsonLine(image, file: path, index: index) : textBlock(image, file: path, index: index, of: images.count)
                    writeStandardOutput(line + "\n")
                }
            } catch let error as MicrographError {
                failures += 1
                printError(error)
            } catch {
                failures += 1
                printError(MicrographError(url: url, reason: "\(error)"))
            }
        }
        if failures > 0 { throw ExitCode(files.count == 1 ? 2 : 1) }
    }

    func textBlock(_ m: Micrograph, file: String, index: Int, of count: Int) -> String {
        let s = m.statistics(frame: 0)
        var lines = ["\(file)\(count > 1 ? " [image \(index)]" : ""): \(m.format)"]
        lines.append("  size        \(m.width) × \(m.height)\(m.frames > 1 ? " × \(m.frames) frames" : "")\(m.channels > 1 ? " × \(m.channels) channels" : "")")
        lines.append("  dtype       \(m.pixelType.rawValue)")
        if let p = m.pixelSize {
            lines.append("  pixel size  \(p.x == p.y ? "\(p.x)" : "\(p.x) × \(p.y)") nm")
        } else {
            lines.append("  pixel size  uncalibrated")
        }
        if let c = m.storedCalibration {
            let unit = c.unitX == c.unitY ? c.unitX : "\(c.unitX) / \(c.unitY)"
            lines.append("  stored      \(c.x == c.y ? "\(c.x)" : "\(c.x) × \(c.y)") \(unit)")
        }
        lines.append("  min/max/mean \(s.min) / \(s.max) / \(s.mean) (frame 0)")
        let md = m.metadata
        if let v = md.voltageKV { lines.append("  voltage     \(v) kV") }
        if let v = md.magnification { lines.append("  magnification \(v)") }
        if let v = md.microscope { lines.append("  microscope  \(v)") }
        if let v = md.detector { lines.append("  detector    \(v)") }
        if let v = md.mode { lines.append("  mode        \(v)") }
        if let v = md.acquisitionDate { lines.append("  acquired    \(v)") }
        return lines.joined(separator: "\n")
    }

    func jsonLine(_ m: Micrograph, file: String, index: Int) -> String {
        let s = m.statistics(frame: 0)
        var o: [String: Any] = [
            "file": file, "index": index, "format": m.format, "width": m.width, "height": m.height,
            "frames": m.frames, "dtype": m.pixelType.rawValue, "sha256": m.sha256(frame: 0),
            "min": jsonNumber(s.min), "max": jsonNumber(s.max), "mean": jsonNumber(s.mean),
        ]
        // The same keys for every image (null where there is no value), as a reader expects.
        o["channels"] = m.channels
        o["pixel_size_nm"] = m.pixelSize.map { [$0.x, $0.y] } ?? NSNull()
        if let c = m.storedCalibration {
            o["unit"] = c.unitX == c.unitY ? c.unitX as Any : [c.unitX, c.unitY] as Any
            o["pixel_size"] = [c.x, c.y]
        } else {
            o["unit"] = NSNull()
            o["pixel_size"] = NSNull()
        }
        var md: [String: Any] = m.metadata.extra.mapValues(MicrographMetadata.typedValue)
        if let v = m.metadata.voltageKV { md["voltage_kv"] = jsonNumber(v) }
        if let v = m.metadata.magnification { md["magnification"] = jsonNumber(v) }
        if let v = m.metadata.acquisitionDate { md["acquisition_date"] = v }
        if let v = m.metadata.detector { md["detector"] = v }
        if let v = m.metadata.microscope { md["microscope"] = v }
        if let v = m.metadata.mode { md["mode"] = v }
        o["metadata"] = md
        guard let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]),
              let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }

    /// JSON has no NaN or infinity: such statistics become null.
    func jsonNumber(_ v: Double) -> Any { v.isFinite ? v : NSNull() }
}
