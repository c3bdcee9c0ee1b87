import ArgumentParser
import Foundation
import MicrographIO
import ParticleAnalysis
import Preprocessing
import Segmentation

struct Measure: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the particles of binary masks (any non-zero pixel is particle).",
        discussion: """
            Holes are filled, 8-connected pixels form one particle, objects below --min-area are \
            dropped. Prints one CSV row per particle (the columns of segment's particles.csv, the \
            mask's file first); sizes in nm need the mask's calibration or --pixel-size.

            Example: nanofind measure results/*_mask.tif > particles.csv
            """)

    @Argument(help: "Mask files (PNG, TIFF, …).") var masks: [String]
    @OptionGroup var calibration: PixelSizeOption
    @Option(help: "Smallest particle in nm², with a pixel size (segment's default).") var minArea = ParticleMeasurement.smallestParticleNm2
    @Option(help: "Smallest particle in pixels (default: 20 without a pixel size, as segment; 1 with one).") var minAreaPx: Int?
    @OptionGroup var split: ParticleSplitOption

    func validate() throws {
        if !(minArea >= 0 && minArea.isFinite) || (minAreaPx ?? 1) < 1 { throw ValidationError("--min-area must be 0 or more and --min-area-px at least 1") }
    }

    func run() throws {
        print((["file"] + Particle.csvHeader).joined(separator: ","))
        var failures = 0
        for path in masks {
            do {
                let images = try IsolatedReader.open(URL(fileURLWithPath: path))
                for m in images {
                    let mask = try BinaryMask(m)
                    let size = try calibration.pixelSize ?? m.squarePixelSizeNm(file: path)
                    // segment's rule: the nm² limit where the pixel size is known, else 20 px.
                    let smallest = ParticleMeasurement.minimumAreas(pixelSizeNm: size, nm2: minArea)
                    let result = ParticleMeasurement(mask: mask, pixelSizeNm: size, minimumAreaNm2: smallest.nm2,
                                                     minimumAreaPx: minAreaPx ?? smallest.px, splitTouching: split.splitTouching)
                    for p in result.particles { print(([csvField(path)] + p.csvFields).joined(separator: ",")) }
                }
            } catch {
                failures += 1
                printError(error)
            }
        }
        if failures > 0 { throw ExitCode(masks.count == 1 ? 2 : 1) }
    }
}
