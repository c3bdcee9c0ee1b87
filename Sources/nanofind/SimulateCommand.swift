import ArgumentParser
import Foundation
import NanoTensor
import MicrographIO
import Preprocessing
import ParticleAnalysis
import Segmentation
import Simulation

/// A value or a range `MIN:MAX`, drawn uniformly per image.
struct Span: ExpressibleByArgument, CustomStringConvertible {
    var range: ClosedRange<Double>
    init?(argument: String) {
        let parts = argument.split(separator: ":").map { Double($0) }
        guard (1...2).contains(parts.count), parts.allSatisfy({ $0 != nil && $0!.isFinite }) else { return nil }
        let a = parts[0]!, b = parts.last!!
        guard a <= b else { return nil }
        range = a...b
    }
    init(_ r: ClosedRange<Double>) { range = r }
    var description: String {
        range.lowerBound == range.upperBound ? String(format: "%g", range.lowerBound) : String(format: "%g:%g", range.lowerBound, range.upperBound)
    }
    func draw(_ rng: inout SeededRandom) -> Double { range.lowerBound == range.upperBound ? range.lowerBound : rng.nextDouble(in: range) }
}

extension Material: ExpressibleByArgument {}

/// A comma-separated list of an enumeration's names (`--material Au,CdSe`, `--shape sphere,cuboctahedron`);
/// images take the materials in turn. Shown in help as it is typed (`Au,CdSe`).
struct NameList<Value: RawRepresentable & CaseIterable & Equatable & Sendable>: ExpressibleByArgument, CustomStringConvertible,
                                                                                  Sendable where Value.RawValue == String {
    var values: [Value]
    init?(argument: String) {
        let list = argument.split(separator: ",").map { Value(rawValue: String($0).trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ $0 != nil }) else { return nil }
        values = list.compactMap { $0 }
    }
    init(_ v: [Value]) { values = v }
    var description: String { values.map(\.rawValue).joined(separator: ",") }
    static var allValueStrings: [String] { Value.allCases.map(\.rawValue) }
}

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate labelled HRTEM micrographs of nanoparticles on amorphous carbon (multislice).",
        discussion: """
            Writes OUTDIR/NAME.mrc (int16 counts, pixel size in the header), NAME_mask.png (0/255), \
            NAME_labels.png (uint16 particle ids) and manifest.jsonl (every parameter and each \
            particle's truth: centre, area, equivalent diameter, zone axis, border flag): the \
            layout `nanofind train` reads, and contact_sheet.png (the first 16 images). Into a \
            folder of an earlier run, images of the same names are replaced and the manifest keeps \
            the other images' lines. Ranges MIN:MAX are drawn per image. Materials: \
            \(Material.allCases.map(\.rawValue).joined(separator: ", ")).

            Example: nanofind simulate -o sim --count 20 --material CdSe --pixel-size 0.04:0.07 --dose 200:3000
            """)

    @OptionGroup var output: OutputFolderOption
    @Option(parsing: .unconditional, help: "Number of micrographs.") var count = 10
    @Option(help: "Material, or several separated by commas (taken in turn).")
    var material = NameList<Material>([.Au])
    @Option(parsing: .unconditional, help: "Image side in pixels.") var size = 512
    @Option(parsing: .unconditional, help: "nm per pixel (or MIN:MAX).") var pixelSize = Span(0.04...0.07)
    @Option(parsing: .unconditional, help: "Defocus in nm, positive = underfocus (or MIN:MAX).") var defocus = Span(-5...10)
    @Option(parsing: .unconditional, help: "Spherical aberration Cs in µm; negative for negative-Cs imaging (e.g. --cs -15).") var cs = 10.0
    @Option(parsing: .unconditional, help: "Accelerating voltage in kV (the electrons' wavelength and interaction with the specimen follow it; the 30-mrad objective aperture, 0.3-mrad illumination and 3-nm focal spread stay).")
    var voltage = 300.0
    @Option(parsing: .unconditional, help: "Dose in electrons per Å² (or MIN:MAX).") var dose = Simulate.defaultDose
    static let defaultDose = Span(200...3000)
    @Option(parsing: .unconditional, help: "Carbon film thickness in nm (or MIN:MAX).") var carbonThickness = Span(2...5)
    @Option(parsing: .unconditional, help: "Particles per image, MIN:MAX.") var particles = Span(0...5)
    @Option(parsing: .unconditional, help: "Particle diameter in nm (or MIN:MAX).") var diameter = Span(2.5...7)
    @Option(parsing: .unconditional, help: "Grid points per output pixel along each axis, 1 to 4 (default: enough for a grid of 0.045 nm, which keeps the metals' 1.4-Å fringes and the heavy atoms' contrast as abTEM's: 1 up to 0.045 nm/px, 2 to 0.09, 3 to 0.135, 4 beyond; each costs its square in time).")
    var oversampling: Int?
    @Option(help: "Particle shapes, one drawn per particle, separated by commas.")
    var shape = NameList<ParticleShape>([.sphere])
    @Option(parsing: .unconditional, help: "Share of particles (after an image's first) placed touching another, their nearest atoms about one bond apart, 0 to 1.")
    var touching = 0.2
    @Option(parsing: .unconditional, help: "Random seed.") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Images simulated at once (default: one per CPU).") var jobs: Int?

    /// Image `index`'s name: its material, then the index (au_0000).
    func imageName(_ material: Material, _ index: Int) -> String { "\(material.rawValue.lowercased())_\(String(format: "%04d", index))" }

    func parameters(_ index: Int) -> SimulationParameters {
        var rng = SeededRandom(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index))
        var p = SimulationParameters()
        p.material = material.values[index % material.values.count]; p.size = size; p.csUm = cs; p.voltageKV = voltage
        p.pixelSizeNm = pixelSize.draw(&rng); p.defocusNm = defocus.draw(&rng); p.doseEPerA2 = dose.draw(&rng)
        p.carbonThicknessNm = carbonThickness.draw(&rng)
        p.particles = Int(particles.range.lowerBound)...Int(particles.range.upperBound)
        p.diameterNm = diameter.range
        p.seed = rng.next()
        p.oversampling = oversampling ?? SimulationParameters.automaticOversampling(pixelSizeNm: p.pixelSizeNm, size: size)
        p.shapes = shape.values == [.sphere] ? nil : shape.values
        p.touchingFraction = touching
        return p
    }

    func validate() throws {
        guard count >= 1 && count <= 100_000 else { throw ValidationError("--count must be between 1 and 100000, got \(count)") }
        if let jobs, !(1...256).contains(jobs) { throw ValidationError("--jobs must be between 1 and 256") }
        // Whole numbers before they become Ints (a huge bound would trap).
        let counts = particles.range
        guard counts.lowerBound >= 0, counts.upperBound <= 100, counts.lowerBound.rounded() == counts.lowerBound,
              counts.upperBound.rounded() == counts.upperBound else {
            throw ValidationError("--particles must be whole numbers within 0...100")
        }
        // Every image draws its values from the ranges: each end of each range must be valid (not
        // just the first images' draws), for every material.
        for index in material.values.indices {
            let drawn = parameters(index)
            var ends: [SimulationParameters] = [drawn]
            for v in [pixelSize.range.lowerBound, pixelSize.range.upperBound] { var q = drawn; q.pixelSizeNm = v; ends.append(q) }
            for v in [defocus.range.lowerBound, defocus.range.upperBound] { var q = drawn; q.defocusNm = v; ends.append(q) }
            for v in [dose.range.lowerBound, dose.range.upperBound] { var q = drawn; q.doseEPerA2 = v; ends.append(q) }
            for v in [carbonThickness.range.lowerBound, carbonThickness.range.upperBound] { var q = drawn; q.carbonThicknessNm = v; ends.append(q) }
            // The int16 limit depends on dose and pixel size together: their brightest corner,
            // checked first, so the refusal names the range's end rather than one image's draw.
            var corner = drawn; corner.doseEPerA2 = dose.range.upperBound; corner.pixelSizeNm = pixelSize.range.upperBound
            ends.insert(corner, at: 0)
            for q in ends {
                guard let problem = q.problem else { continue }
                // The default range named as such: the user never typed it.
                let given = dose.range == Simulate.defaultDose.range ? " (--dose's default range \(Simulate.defaultDose))" : ""
                throw ValidationError(problem.hasPrefix("--dose") ? problem + given : problem)
            }
        }
    }

    /// Appends one line to a manifest as it grows (best effort: the manifest is written whole,
    /// and any write error reported, at the end of the run).
    static func append(_ line: String, to url: URL) {
        let fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// The manifest line's image name, or nil.
    static func manifestName(_ line: Substring) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["name"] as? String
    }

    func run() throws {
        let out = try output.prepare()
        let start = Date()
        // An earlier run's lines for the images this one replaces leave the manifest before any
        // image is replaced: an interrupted run must not leave new images described by old lines.
        // (If it is interrupted, the images it had not reached keep their files without their
        // lines: no truth rather than a wrong one; each image written has its line appended as it
        // is written, so an interrupted run's finished images keep theirs. A failure puts the
        // others' lines back.)
        let manifest = out.appendingPathComponent("manifest.jsonl")
        let previous = (try? String(contentsOf: manifest, encoding: .utf8)) ?? ""
        let replaced = Set((0..<count).map { imageName(material.values[$0 % material.values.count], $0) })
        let previousLines = previous.split(separator: "\n").map(String.init)
        let kept = previousLines.filter { Simulate.manifestName(Substring($0)).map { !replaced.contains($0) } ?? false }
        if kept.count != previousLines.count {
            do {
                if kept.isEmpty { try FileManager.default.removeItem(at: manifest) }
                else { try writeAtomically(Array((kept.joined(separator: "\n") + "\n").utf8), to: manifest) }
            } catch { throw exitWithInputError(error) }
        }
        let jobs = self.jobs ?? ProcessInfo.processInfo.activeProcessorCount
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var sheet: [(String, SimulatedMicrograph)] = []
            var lines: [String?]
            var done = 0
            var saturated: [(name: String, pixels: Int)] = []
            var failure: Error?
            init(_ n: Int) { lines = Array(repeating: nil, count: n) }
        }
        let results = Results(count)
        let command = self
        ThreadPool.sideBySide(min(jobs, count)) { worker in
            var index = worker
            while index < command.count {
                let p = command.parameters(index)
                let name = command.imageName(p.material, index)
                do {
                    let m = Simulator.simulate(p)
                    let line = try m.write(name: name, into: out)
                    results.lock.lock(); results.lines[index] = line; results.done += 1
                    // Appended now (the whole manifest is written in order at the end): an
                    // interrupted run's finished images keep their truth.
                    Simulate.append(line, to: manifest)
                    if m.saturatedPixels > 0 { results.saturated.append((name, m.saturatedPixels)) }
                    if index < 16 { results.sheet.append((name, m)) }
                    writeStandardError("\r\(results.done)/\(command.count) micrographs")
                    results.lock.unlock()
                } catch {
                    results.lock.lock(); results.failure = results.failure ?? error; results.lock.unlock()
                }
                index += jobs
            }
        }
        writeStandardError("\n")
        let lines = results.lines
        if let failure = results.failure {
            // The images written have their lines; those not (their files as they were, each
            // image's written together) their earlier lines back.
            let written = Set(lines.compactMap { $0 }.compactMap { Simulate.manifestName(Substring($0)) })
            let untouched = previousLines.filter { line in Simulate.manifestName(Substring(line)).map { replaced.contains($0) && !written.contains($0) } ?? false }
            let all = kept + untouched + lines.compactMap { $0 }
            if !all.isEmpty { try? writeAtomically(Array((all.joined(separator: "\n") + "\n").utf8), to: manifest) }
            throw exitWithInputError(failure)
        }
        do {
            try contactSheet(results.sheet.sorted { $0.0 < $1.0 }).write(to: out.appendingPathComponent("contact_sheet.png"))
        } catch { throw exitWithInputError(error) }
        do {
            try writeAtomically(Array(((kept + lines.compactMap { $0 }).joined(separator: "\n") + "\n").utf8), to: manifest)
        } catch { throw exitWithInputError(error) }
        // Clipped counts flatten the brightest columns' contrast: said, with the manifest's count.
        if let worst = results.saturated.max(by: { $0.pixels < $1.pixels }) {
            writeStandardError("warning: \(results.saturated.count) of \(count) micrographs have pixels clipped at int16's ends (at most \(worst.pixels), in \(worst.name); saturated_px in manifest.jsonl): lower --dose to keep every count\n")
        }
        // Per micrograph: the wall time over the micrographs each worker ran (min(jobs, count) of
        // them side by side), contact sheet and manifest included.
        print(String(format: "%d micrographs of %@ -> %@ (%.1f s, %.2f s each on each of %d workers)", count,
                     material.values.map(\.rawValue).joined(separator: ", "), out.path,
                     Date().timeIntervalSince(start), Date().timeIntervalSince(start) * Double(min(jobs, count)) / Double(count),
                     min(jobs, count)))
    }


    /// Up to 16 micrographs with their true outlines (red), 256 px each, four to a row.
    func contactSheet(_ images: [(String, SimulatedMicrograph)]) -> Canvas {
        let tile = 256, columns = min(4, max(1, images.count)), rows = (images.count + columns - 1) / columns
        var sheet = Canvas(width: columns * (tile + 4), height: max(1, rows) * (tile + 18), background: (255, 255, 255))
        for (k, (name, m)) in images.enumerated() {
            let n = m.parameters.size
            let raw = FloatImage(width: n, height: n, pixels: m.counts.map { Float($0) })
            let labels = ComponentLabels(width: n, height: n) { m.labels[$0] != 0 }
            let small = Overlay.render(resample(raw, width: tile, height: tile), labels: ComponentLabels(width: tile, height: tile) { i in
                labels.labels[(i / tile * n / tile) * n + (i % tile) * n / tile] != 0 }, particles: [])
            let ox = (k % columns) * (tile + 4) + 2, oy = (k / columns) * (tile + 18) + 2
            for y in 0..<tile { for x in 0..<tile {
                sheet.set(ox + x, oy + y, small.palette[Int(small.indices[y * tile + x])])
            } }
            sheet.text(name, x: ox, y: oy + tile + 4)
        }
        return sheet
    }
}
