import Foundation
import MicrographIO
import NanoNet
import Preprocessing
import ParticleAnalysis
import Segmentation

/// Scores of one image or a pool of images, as the paper reports them.
public struct EvaluationScores: Codable, Sendable {
    public var pixelAccuracy: Double
    public var dice: Double
    public var iou: Double
    public var precision: Double
    public var recall: Double
    /// Rows: true background, true particle; columns: predicted background, particle (each row sums to 1).
    public var confusion: [[Double]]
    public var images: Int
    public var counts: ConfusionCounts

    enum CodingKeys: String, CodingKey {
        case pixelAccuracy = "pixel_accuracy", dice, iou, precision, recall, confusion, images, counts
    }

    public init(_ c: ConfusionCounts, images: Int) {
        pixelAccuracy = c.pixelAccuracy; dice = c.dice; iou = c.iou; precision = c.precision; recall = c.recall
        confusion = c.normalisedConfusion; self.images = images; counts = c
    }
}

/// One evaluated image.
public struct ImageEvaluation: Codable, Sendable {
    public var image: String
    public var group: String
    public var pixelSizeNm: Double?
    public var scores: EvaluationScores
    /// Particles found (after holes filled and objects under 0.5 nm² dropped).
    public var particlesFound: Int
    /// Particles in the manifest (nil without one) and connected components of the true mask.
    public var particlesTrue: Int?
    public var componentsTrue: Int
    /// For each manifest particle not touching the border: (true, found) equivalent diameters in
    /// nm; found is nil when no particle was found at its centre.
    public var diameters: [DiameterPair]

    enum CodingKeys: String, CodingKey {
        case image, group, pixelSizeNm = "pixel_size_nm", scores, particlesFound = "particles_found",
             particlesTrue = "particles_true", componentsTrue = "components_true", diameters
    }

    /// Every key, null where there is no value (an uncalibrated image's pixel size).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image); try c.encode(group, forKey: .group); try c.encode(pixelSizeNm, forKey: .pixelSizeNm)
        try c.encode(scores, forKey: .scores); try c.encode(particlesFound, forKey: .particlesFound)
        try c.encode(particlesTrue, forKey: .particlesTrue); try c.encode(componentsTrue, forKey: .componentsTrue)
        try c.encode(diameters, forKey: .diameters)
    }
}

public struct DiameterPair: Codable, Sendable {
    public var trueNm: Double
    public var foundNm: Double?
    enum CodingKeys: String, CodingKey { case trueNm = "true_nm", foundNm = "found_nm" }

    /// Both keys; `found_nm` null for a particle not found.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(trueNm, forKey: .trueNm); try c.encode(foundNm, forKey: .foundNm)
    }
}

/// How well particle counts and sizes come out, over a set of images with a manifest.
public struct ParticleScores: Codable, Sendable {
    /// Median of |found − true| / true over matched particles not touching the border.
    public var medianRelativeDiameterError: Double?
    public var particlesCompared: Int
    public var particlesMissed: Int
    /// Fraction of images whose particle count equals the manifest's.
    public var countsMatchManifest: Double?
    /// Fraction of images whose particle count equals the true mask's, measured the same way
    /// (touching particles split as the prediction's, the same smallest particle).
    public var countsMatchMask: Double

    enum CodingKeys: String, CodingKey {
        case medianRelativeDiameterError = "median_relative_diameter_error", particlesCompared = "particles_compared",
             particlesMissed = "particles_missed", countsMatchManifest = "counts_match_manifest", countsMatchMask = "counts_match_mask"
    }

    /// Every key, null where there is no value (no particle compared, no manifest).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(medianRelativeDiameterError, forKey: .medianRelativeDiameterError)
        try c.encode(particlesCompared, forKey: .particlesCompared); try c.encode(particlesMissed, forKey: .particlesMissed)
        try c.encode(countsMatchManifest, forKey: .countsMatchManifest); try c.encode(countsMatchMask, forKey: .countsMatchMask)
    }

    init(_ images: [ImageEvaluation]) {
        let pairs = images.flatMap(\.diameters)
        let errors = pairs.compactMap { p in p.foundNm.map { abs($0 - p.trueNm) / p.trueNm } }.sorted()
        medianRelativeDiameterError = errors.isEmpty ? nil : (errors[(errors.count - 1) / 2] + errors[errors.count / 2]) / 2
        particlesCompared = errors.count
        particlesMissed = pairs.count - errors.count
        let withManifest = images.filter { $0.particlesTrue != nil }
        countsMatchManifest = withManifest.isEmpty ? nil
            : Double(withManifest.filter { $0.particlesTrue == $0.particlesFound }.count) / Double(withManifest.count)
        countsMatchMask = Double(images.filter { $0.componentsTrue == $0.particlesFound }.count) / Double(max(1, images.count))
    }
}

/// The whole evaluation: per image, pooled over all, and per group (material).
public struct EvaluationReport: Codable, Sendable {
    public var model: String
    public var method: String
    public var threshold: Float?
    public var pooled: EvaluationScores
    public var groups: [String: EvaluationScores]
    public var particles: ParticleScores
    public var perImage: [ImageEvaluation]
    /// How the masks were made beyond model and threshold (preparation, flattening, TTA,
    /// splitting, a given pixel size), so that two evaluations can be told apart.
    public var settings: [String: String] = [:]

    enum CodingKeys: String, CodingKey { case model, method, threshold, pooled, groups, particles, perImage = "images", settings }

    /// Every key, `threshold` as null for the Bragg filter (which has none), so that a reader
    /// finds the keys `evaluate --help` lists whatever the method.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model); try c.encode(method, forKey: .method); try c.encode(threshold, forKey: .threshold)
        try c.encode(pooled, forKey: .pooled); try c.encode(groups, forKey: .groups); try c.encode(particles, forKey: .particles)
        try c.encode(perImage, forKey: .perImage); try c.encode(settings, forKey: .settings)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model); method = try c.decode(String.self, forKey: .method)
        threshold = try c.decodeIfPresent(Float.self, forKey: .threshold)
        pooled = try c.decode(EvaluationScores.self, forKey: .pooled)
        groups = try c.decode([String: EvaluationScores].self, forKey: .groups)
        particles = try c.decode(ParticleScores.self, forKey: .particles)
        perImage = try c.decode([ImageEvaluation].self, forKey: .perImage)
        settings = try c.decodeIfPresent([String: String].self, forKey: .settings) ?? [:]  // absent before it was written
    }

    public init(model: String, method: String, threshold: Float?, images: [ImageEvaluation]) {
        self.model = model; self.method = method; self.threshold = threshold; perImage = images
        pooled = EvaluationScores(images.reduce(ConfusionCounts()) { $0 + $1.scores.counts }, images: images.count)
        groups = Dictionary(grouping: images, by: \.group).mapValues {
            EvaluationScores($0.reduce(ConfusionCounts()) { $0 + $1.scores.counts }, images: $0.count)
        }
        particles = ParticleScores(images)
    }

    public var csv: String {
        var lines = ["image,group,pixel_size_nm,pixel_accuracy,dice,iou,precision,recall,tp,fp,tn,fn"]
        func line(_ name: String, _ group: String, _ p: Double?, _ s: EvaluationScores) -> String {
            let c = s.counts
            return [csvField(name), csvField(group), p.map { String(format: "%.5g", $0) } ?? "", String(format: "%.5f", s.pixelAccuracy),
                    String(format: "%.5f", s.dice), String(format: "%.5f", s.iou), String(format: "%.5f", s.precision),
                    String(format: "%.5f", s.recall), "\(c.truePositive)", "\(c.falsePositive)", "\(c.trueNegative)",
                    "\(c.falseNegative)"].joined(separator: ",")
        }
        for i in perImage { lines.append(line(i.image, i.group, i.pixelSizeNm, i.scores)) }
        for (g, s) in groups.sorted(by: { $0.key < $1.key }) { lines.append(line("(pooled)", g, nil, s)) }
        lines.append(line("(pooled)", "(all)", nil, pooled))
        return lines.joined(separator: "\n") + "\n"
    }

    /// The pooled and per-group confusion matrices as a picture.
    public func confusionChart() -> Canvas {
        let panels = [("all", pooled)] + groups.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let cell = 90, pad = 30
        var c = Canvas(width: panels.count * (2 * cell + 2 * pad) + pad, height: 2 * cell + 90)
        for (i, (name, s)) in panels.enumerated() {
            let x0 = pad + i * (2 * cell + 2 * pad) + 20, y0 = 50
            c.text(String(name.prefix(14)), x: x0, y: 12, scale: 2)
            for r in 0..<2 { for col in 0..<2 {
                let v = s.confusion[r][col]
                let shade = UInt8(255 - min(255, Int(v * 200)))
                c.fill(x0: x0 + col * cell, y0: y0 + r * cell, x1: x0 + (col + 1) * cell - 2, y1: y0 + (r + 1) * cell - 2, (shade, shade, 255))
                c.text(String(format: "%.3f", v), x: x0 + col * cell + 14, y: y0 + r * cell + cell / 2 - 7, v > 0.6 ? Canvas.white : Canvas.black, scale: 2)
            } }
            c.text("BG", x: x0 - 18, y: y0 + cell / 2 - 3); c.text("P", x: x0 - 12, y: y0 + cell + cell / 2 - 3)
            c.text("PRED BG", x: x0 + 20, y: y0 + 2 * cell + 4); c.text("PRED P", x: x0 + cell + 20, y: y0 + 2 * cell + 4)
        }
        return c
    }
}

/// Runs a model (or the Bragg filter) over labelled data and scores it against the masks.
public struct Evaluation {
    public var data: [URL]
    public var open: (URL) throws -> [Micrograph] = MicrographReader.open
    /// Split touching particles before counting and sizing them (as `segment` does).
    public var splitTouching = true
    /// The pixel size (nm) to measure every image at instead of its file's (`--pixel-size`), as
    /// the prediction was made at: nil measures each image at its own calibration.
    public var pixelSizeOverride: Double?
    /// Gets a line (`file: what`) for files of the data folders that are not used and masks
    /// that look inverted (`LabelledDataset.load`).
    public var warn: (String) -> Void = { _ in }
    public init(data: [URL]) { self.data = data }

    /// Scores of `predict` (labelled image → predicted mask) on every labelled image of the
    /// data, and particle counts and sizes against the manifest where there is one.
    public func run(model: String, method: String, threshold: Float?,
                    predict: (LabelledImage) throws -> BinaryMask) throws -> EvaluationReport {
        // Warnings wait until every image is scored: a refused run prints its one error line alone.
        var warnings: [String] = []
        let images = try LabelledDataset.load(data, open: open) { warnings.append($0) }
        var truth: [String: [String: Any]] = [:]
        for folder in data {
            for e in LabelledDataset.manifestEntries(near: folder) { if let n = e["name"] as? String { truth[n] = e } }
        }
        var results: [ImageEvaluation] = []
        for image in images {
            let mask = try predict(image)
            let pixelSizeNm = pixelSizeOverride ?? image.pixelSizeNm
            // The prediction and the true mask measured alike (split, smallest particle), so that a
            // perfect prediction counts right.
            func measured(_ m: BinaryMask) -> ParticleMeasurement {
                let smallest = ParticleMeasurement.minimumAreas(pixelSizeNm: pixelSizeNm)
                return ParticleMeasurement(mask: m, pixelSizeNm: pixelSizeNm, minimumAreaNm2: smallest.nm2,
                                           minimumAreaPx: smallest.px, splitTouching: splitTouching)
            }
            let found = measured(mask)
            let components = measured(image.mask).particles.count
            var pairs: [DiameterPair] = []
            let entry = truth[image.name]
            // Sizes are compared in nm: an image without a pixel size has none to compare (its
            // particles are neither compared nor 'not found').
            for p in (entry?["particles"] as? [[String: Any]]) ?? [] where pixelSizeNm != nil && (p["touches_border"] as? Bool) == false {
                // A manifest is the user's file: a particle without a positive diameter or a finite
                // centre cannot be compared, and is skipped (never trapped on, never an infinite error).
                guard let d = p["eq_diameter_nm"] as? Double, d.isFinite, d > 0, let c = p["center_px"] as? [Double], c.count == 2,
                      c.allSatisfy({ $0.isFinite }) else { continue }
                let x = Int(min(max(c[0], 0), Double(mask.width - 1))), y = Int(min(max(c[1], 0), Double(mask.height - 1)))
                let label = Int(found.labels.labels[y * mask.width + x])
                pairs.append(DiameterPair(trueNm: d, foundNm: label > 0 ? found.particles[label - 1].equivalentDiameterNm : nil))
            }
            results.append(ImageEvaluation(image: image.name, group: image.group, pixelSizeNm: pixelSizeNm,
                                           scores: EvaluationScores(ConfusionCounts(predicted: mask, truth: image.mask), images: 1),
                                           particlesFound: found.particles.count, particlesTrue: entry?["n_particles"] as? Int,
                                           componentsTrue: components, diameters: pairs))
        }
        warnings.forEach(warn)
        return EvaluationReport(model: model, method: method, threshold: threshold, images: results)
    }
}
