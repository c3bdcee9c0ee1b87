import ArgumentParser
import Foundation
import Training
import MicrographIO
import ParticleAnalysis
import Preprocessing
import Segmentation

struct Measure: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the particles of masks (0 background, particle elsewhere) or label images (one id a particle).",
        discussion: """
            In a mask every non-zero pixel is particle; where the mask has graded edges \
            (anti-aliased drawing, a resampling: more than one non-zero value, most at the \
            largest), the pixels at least half the largest value, said in a warning. Values are read as the file stores \
            them (a Fiji mask saved with an inverting LUT, 255 the particle shown black, is not \
            inverted). A mask's holes are filled, 8-connected pixels form one particle, and particles that \
            touch are split (--no-split-touching keeps them whole). A label image (segment's \
            _labels.tif, or Fiji's, scikit-image's…; or 8-bit colours, each colour a particle, as \
            MorphoLibJ's Labels to RGB exports them, the id R·65536 + G·256 + B) is measured as it \
            is: each id one particle, \
            touching ones apart, no holes filled and nothing split, the id its table row's. \
            --input auto (the default) takes a file as labels when its pixels are whole numbers \
            (or colours), \
            with more than one id besides 0, each id one connected piece; anything else (a 0/255 \
            or 0/1 mask, graded edges, classes, probabilities) as a mask, and a label image of one \
            particle as the mask it equals. Objects below --min-area are dropped either way. Every image \
            of a file is measured (each frame of a stack). Prints one CSV row per particle: the \
            file, the image's name (as segment names it, so the rows join its particles.csv: the \
            file's stem without _mask or _labels, or that with _K for image K of several), then \
            the columns of segment's particles.csv. Sizes in nm need the file's calibration (as \
            segment's TIFFs carry it) or --pixel-size (PNG masks carry none). A particle cut by \
            pixels that showed no specimen (padding, NaN pixels, an SEM's information bar) is \
            flagged touches_border by segment, which saw the micrograph; a mask does not record \
            those pixels, so measure flags only particles at the image's edges.

            Examples: nanofind measure results/*_mask.tif > particles.csv
                      nanofind measure results/*_labels.tif > particles.csv
            """)

    enum Input: String, ExpressibleByArgument, CaseIterable {
        case auto, mask, labels
    }

    @Argument(help: "Mask or label image files (PNG, TIFF, MRC, …).") var masks: [String]
    @Option(help: "What the files hold: auto, mask or labels (see above).") var input: Input = .auto
    @OptionGroup var calibration: PixelSizeOption
    @Option(parsing: .unconditional, help: "Smallest particle in nm², with a pixel size (segment's default).") var minArea = ParticleMeasurement.smallestParticleNm2
    @Option(parsing: .unconditional, help: "Smallest particle in pixels (default: 20 without a pixel size, as segment; 1 with one).") var minAreaPx: Int?
    @OptionGroup var split: ParticleSplitOption

    /// The image a mask or label file is of, as segment names it: `au_1000_mask.tif` and
    /// `au_1000_labels.tif` are `au_1000`'s (the file's own URL where its stem has neither ending).
    static func imageURL(of url: URL) -> URL {
        let stem = url.deletingPathExtension().lastPathComponent
        for suffix in ["_mask", "_labels"] where stem.hasSuffix(suffix) && stem.count > suffix.count {
            return url.deletingLastPathComponent().appendingPathComponent(String(stem.dropLast(suffix.count)) + "." + url.pathExtension)
        }
        return url
    }

    func validate() throws {
        if !(minArea >= 0 && minArea.isFinite) || (minAreaPx ?? 1) < 1 { throw ValidationError("--min-area must be 0 or more and --min-area-px at least 1") }
    }

    /// A mask's measurement, with a warning where it is mostly particle: an inverted mask
    /// (ImageJ's inverting LUT) measures as one particle covering the image's background.
    func measuredMask(_ mask: BinaryMask, file: String, image: String, frames: Int,
                      _ measure: (BinaryMask) -> ParticleMeasurement) -> ParticleMeasurement {
        if let note = LabelledDataset.invertedNote(mask) {
            writeStandardError("warning: \(oneLine(file))\(frames > 1 ? " (\(image))" : ""): \(note)\n")
        }
        return measure(mask)
    }

    func run() throws {
        print((["file", "image"] + Particle.csvHeader).joined(separator: ","))
        var failures = 0
        var uncalibrated: [String] = []
        for path in masks {
            do {
                let url = URL(fileURLWithPath: path)
                // As stored: a mask's or a label image's values are what they mean (see above).
                let images = try IsolatedReader.open(url).map(\.storedValues)
                let frames = BatchSegmentation.images(of: images)
                try BatchSegmentation.checkMeasurable(images, file: url)  // before any row of the file
                // What the file holds, decided for all its images before any row is printed.
                let labels: [LabelImage?]
                switch input {
                case .auto:
                    labels = LabelImage.labelsIfAny(images) { ids, pieces in
                        writeStandardError("warning: \(oneLine(path)): read as a mask: its \(ids) values lie in \(pieces) separate pieces (a label image's ids lie in one each; give --input labels if it is one)\n")
                    }?.flatMap { $0 } ?? frames.map { _ in nil }
                case .labels: labels = try frames.map { m, frame in try LabelImage(m, frame: frame) }
                case .mask: labels = frames.map { _ in nil }
                }
                var rows: [String] = [], calibrated = true, graded = false
                for ((name, (m, frame)), labelImage) in zip(zip(BatchSegmentation.names(for: Measure.imageURL(of: url), count: frames.count), frames), labels) {
                    let size = try calibration.pixelSize ?? m.squarePixelSizeNm(file: path)
                    if size == nil { calibrated = false }
                    // segment's rule: the nm² limit where the pixel size is known, else 20 px.
                    let smallest = ParticleMeasurement.minimumAreas(pixelSizeNm: size, nm2: minArea)
                    let result = if let labelImage {
                        ParticleMeasurement(labelImage: labelImage, pixelSizeNm: size, minimumAreaNm2: smallest.nm2,
                                            minimumAreaPx: minAreaPx ?? smallest.px)
                    } else {
                        try measuredMask({ let (mask, g) = try BinaryMask.read(m, frame: frame); graded = graded || g; return mask }(),
                                         file: path, image: name, frames: frames.count) { mask in
                            ParticleMeasurement(mask: mask, pixelSizeNm: size, minimumAreaNm2: smallest.nm2,
                                                minimumAreaPx: minAreaPx ?? smallest.px, splitTouching: split.splitTouching)
                        }
                    }
                    rows += result.particles.map { ([csvField(path), csvField(name)] + $0.csvFields).joined(separator: ",") }
                }
                if graded {
                    writeStandardError("warning: \(oneLine(path)): a mask with graded edges (more than one non-zero value, most at the largest): particle where at least half the largest value\n")
                }
                rows.forEach { print($0) }  // a file's rows all together, or none
                if !calibrated { uncalibrated.append(path) }
            } catch {
                failures += 1
                printError(error)
            }
        }
        // Sizes in pixels said once, as segment says it: the first file, and a count.
        if let first = uncalibrated.first {
            let more = uncalibrated.count == 1 ? "" : " (and \(uncalibrated.count - 1) more \(uncalibrated.count == 2 ? "file" : "files"))"
            writeStandardError("warning: \(oneLine(first))\(more) has no pixel size; sizes are in pixels, the nm columns empty, objects under \(minAreaPx ?? ParticleMeasurement.smallestParticlePxUncalibrated) px dropped (give --pixel-size NM)\n")
        }
        if failures > 0 { throw ExitCode(masks.count == 1 ? 2 : 1) }
    }
}
