import Foundation
import MicrographIO
import NanoNet
import Preprocessing
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
}

/// The whole evaluation: per image, pooled over all, and per group (material).
public struct EvaluationReport: Codable, Sendable {
    public var model: String
    public var method: String
    public var threshold: Float?
    public var pooled: EvaluationScores
    public var groups: [String: EvaluationScores]
    public var perImage: [ImageEvaluation]

    enum CodingKeys: String, CodingKey { case model, method, threshold, pooled, groups, perImage = "images" }

    public init(model: String, method: String, threshold: Float?, images: [ImageEvaluation]) {
        self.model = model; self.method = method; self.threshold = threshold; perImage = images
        pooled = EvaluationScores(images.reduce(ConfusionCounts()) { $0 + $1.scores.counts }, images: images.count)
        groups = Dictionary(grouping: images, by: \.group).mapValues {
            EvaluationScores($0.reduce(ConfusionCounts()) { $0 + $1.scores.counts }, images: $0.count)
        }
    }

    public var csv: String {
        var lines = ["image,group,pixel_size_nm,pixel_accuracy,dice,iou,precision,recall,tp,fp,tn,fn"]
        func line(_ name: String, _ group: String, _ p: Double?, _ s: EvaluationScores) -> String {
            let c = s.counts
            return [name, group, p.map { String(format: "%.5g", $0) } ?? "", String(format: "%.5f", s.pixelAccuracy),
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
    public init(data: [URL]) { self.data = data }

    /// Scores of `predict` (raw image, pixel size → mask) on every labelled image of the data.
    public func run(model: String, method: String, threshold: Float?,
                    predict: (LabelledImage) throws -> BinaryMask) throws -> EvaluationReport {
        let images = try LabelledDataset.load(data, open: open)
        var results: [ImageEvaluation] = []
        for image in images {
            let mask = try predict(image)
            results.append(ImageEvaluation(image: image.name, group: image.group, pixelSizeNm: image.pixelSizeNm,
                                           scores: EvaluationScores(ConfusionCounts(predicted: mask, truth: image.mask), images: 1)))
        }
        return EvaluationReport(model: model, method: method, threshold: threshold, images: results)
    }
}
