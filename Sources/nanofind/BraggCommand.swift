import ArgumentParser
import Foundation
import MicrographIO
import Preprocessing
import Segmentation

struct Bragg: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find crystalline regions by automatic Bragg filtering (no model; the paper's baseline).",
        discussion: """
            Log power spectrum minus its 25×25 median (background and Thon rings), smoothed; peaks \
            above a robust threshold among lattice spacings of 0.1–0.45 nm; a smooth mask around \
            them; the inverse transform's local amplitude; Otsu's threshold; holes filled and \
            objects under 1 nm² dropped. Writes OUTDIR/NAME_mask.png (0/255), NAME_mask.tif (the \
            same, calibrated in nm for Fiji and `nanofind measure`) and NAME_amplitude.tif. Needs the pixel size (from the file or --pixel-size). Files that \
            are already there (a mask beside its image, an earlier run) are not replaced without \
            --overwrite, and never when they are inputs of this run; two inputs with the same name \
            are refused.

            Example: nanofind bragg image.dm4 -o bragg
            """)

    @Argument(help: "Micrograph files.") var inputs: [String]
    @OptionGroup var output: OutputFolderOption
    @OptionGroup var calibration: PixelSizeOption
    @Flag(help: "Replace NAME_mask.png, NAME_mask.tif and NAME_amplitude.tif when they exist (never an input of this run).") var overwrite = false

    func run() throws {
        let out = try output.prepare()
        let pixelSize = calibration.pixelSize
        let inputPaths = Set(inputs.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().standardizedFileURL.path })
        var claimed: [String: String] = [:]  // output name → the input that writes it
        var failures = 0
        for input in inputs {
            let url = URL(fileURLWithPath: input)
            do {
                let images = try IsolatedReader.open(url)
                // Every frame of a stack, named as segment and measure name them.
                let frames = BatchSegmentation.images(of: images)
                let names = BatchSegmentation.names(for: url, count: frames.count)
                for name in names {
                    if let other = claimed[name] {
                        throw MicrographError(url: url, reason: "writes \(name)_mask.png, as \(other) does; rename one of them")
                    }
                    for suffix in ["_mask.png", "_mask.tif", "_amplitude.tif"] {
                        let target = out.appendingPathComponent(name + suffix)
                        let path = target.resolvingSymlinksInPath().standardizedFileURL.path
                        if inputPaths.contains(path) {
                            throw MicrographError(url: target, reason: "is an input of this run; bragg will not write over it")
                        }
                        if !overwrite && FileManager.default.fileExists(atPath: target.path) {
                            throw MicrographError(url: target, reason: "exists (a mask beside its image, or an earlier run); give --overwrite to replace it")
                        }
                    }
                }
                for name in names { claimed[name] = input }
                try BatchSegmentation.checkMeasurable(images, file: url)  // before any file is written
                // Every image's pixel size before the first is filtered: a file whose second
                // image cannot be done leaves no output of its first.
                let sizes = try frames.map { (m, _) in
                    if let problem = BraggFilter().sizeProblem(width: m.width, height: m.height) { throw MicrographError(url: url, reason: problem) }
                    guard let p = try pixelSize ?? m.squarePixelSizeNm(file: input) else {
                        throw MicrographError(url: url, reason: "has no pixel size, which Bragg filtering needs (give --pixel-size NM)")
                    }
                    if let problem = BraggFilter().problem(pixelSizeNm: p) { throw MicrographError(url: url, reason: problem) }
                    return p
                }
                for p in Set(sizes).sorted() {
                    if let warning = BraggFilter().warning(pixelSizeNm: p) {
                        writeStandardError("warning: \(oneLine(input)): \(warning)\n")
                    }
                }
                // Written together (`writeTogether`), each frame filtered as its mask is written:
                // a file's outputs appear all at once or not at all, and a failure leaves an
                // earlier run's outputs (--overwrite) as they were.
                var lines = [String](repeating: "", count: frames.count), notes = [[String]](repeating: [], count: frames.count)
                // Each frame filtered when its first file is written, kept until its last is.
                var filtered: [Int: BraggFilter.Result] = [:]
                func result(_ k: Int, last: Bool = false) throws -> BraggFilter.Result {
                    if let r = filtered[k] { if last { filtered[k] = nil }; return r }
                    let (m, frame) = frames[k]
                    let r = BraggFilter().segment(try FloatImage(m, frame: frame), pixelSizeNm: sizes[k])
                    lines[k] = String(format: "%@: %d peak pixels, %.1f %% crystalline -> %@_mask.png", input, r.peaks,
                                      100 * Double(r.mask.foregroundCount) / Double(m.width * m.height), names[k])
                    notes[k] = r.notes
                    filtered[k] = r
                    return r
                }
                var files: [(url: URL, write: (URL) throws -> Void)] = []
                for (k, ((m, _), (name, p))) in zip(frames, zip(names, sizes)).enumerated() {
                    files.append((out.appendingPathComponent(name + "_mask.png"), { hidden in
                        try PNGWriter.writeGrey8(try result(k).mask.bytes255, width: m.width, height: m.height, to: hidden)
                    }))
                    // The mask again as a calibrated TIFF, as segment writes it: `measure` then sizes
                    // its particles in nm (the PNG carries no pixel size).
                    files.append((out.appendingPathComponent(name + "_mask.tif"), { hidden in
                        try TIFFWriter.write(Micrograph(width: m.width, height: m.height, pixelType: .uint8, data: try result(k).mask.bytes255,
                                                        pixelSize: PixelSize(isotropic: p), format: "tiff"), to: hidden, deflated: true)
                    }))
                    files.append((out.appendingPathComponent(name + "_amplitude.tif"), { hidden in
                        try TIFFWriter.writeFloat32(try result(k, last: true).amplitude.pixels, width: m.width, height: m.height, pixelSizeNM: p, to: hidden)
                    }))
                }
                try writeTogether(files)
                lines.forEach { print($0) }
                // As segment tells them: pixels that show no specimen, or nothing to filter.
                for (name, list) in zip(names, notes) {
                    for note in list { writeStandardError("warning: \(oneLine(input)) (\(name)): \(note)\n") }
                }
            } catch {
                failures += 1
                printError(error)
            }
        }
        if failures > 0 { throw ExitCode(inputs.count == 1 ? 2 : 1) }
    }
}
