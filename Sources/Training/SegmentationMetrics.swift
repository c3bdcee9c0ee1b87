import Preprocessing

/// Pixel counts of a prediction against the truth, and the scores the paper reports. Counts add,
/// so pooled scores over many images are the scores of the summed counts (dice of an empty
/// truth mask is then no problem: it is the pool that is scored).
public struct ConfusionCounts: Sendable, Equatable, Codable {
    public var truePositive = 0
    public var falsePositive = 0
    public var trueNegative = 0
    public var falseNegative = 0

    public init(truePositive: Int = 0, falsePositive: Int = 0, trueNegative: Int = 0, falseNegative: Int = 0) {
        self.truePositive = truePositive; self.falsePositive = falsePositive
        self.trueNegative = trueNegative; self.falseNegative = falseNegative
    }

    /// Counts of `predicted` against `truth` (same size).
    public init(predicted: BinaryMask, truth: BinaryMask) {
        precondition(predicted.width == truth.width && predicted.height == truth.height,
                     "ConfusionCounts: prediction \(predicted.width)x\(predicted.height), truth \(truth.width)x\(truth.height)")
        for (p, t) in zip(predicted.values, truth.values) {
            switch (p != 0, t != 0) {
            case (true, true): truePositive += 1
            case (true, false): falsePositive += 1
            case (false, false): trueNegative += 1
            case (false, true): falseNegative += 1
            }
        }
    }

    public static func + (a: ConfusionCounts, b: ConfusionCounts) -> ConfusionCounts {
        ConfusionCounts(truePositive: a.truePositive + b.truePositive, falsePositive: a.falsePositive + b.falsePositive,
                        trueNegative: a.trueNegative + b.trueNegative, falseNegative: a.falseNegative + b.falseNegative)
    }

    public var total: Int { truePositive + falsePositive + trueNegative + falseNegative }
    public var pixelAccuracy: Double { ratio(truePositive + trueNegative, total) }
    /// F1 of the particle class: 2TP / (2TP + FP + FN); 1 when both masks are empty.
    public var dice: Double { ratio(2 * truePositive, 2 * truePositive + falsePositive + falseNegative, empty: 1) }
    public var iou: Double { ratio(truePositive, truePositive + falsePositive + falseNegative, empty: 1) }
    /// TP / (TP + FP); with nothing predicted, 1 when there was nothing to find and 0 when
    /// particles were missed (a model that finds nothing is not precise on an image of particles).
    public var precision: Double { ratio(truePositive, truePositive + falsePositive, empty: falseNegative == 0 ? 1 : 0) }
    public var recall: Double { ratio(truePositive, truePositive + falseNegative, empty: 1) }
    /// Rows: true class (background, particle); columns: predicted class; each row sums to 1.
    public var normalisedConfusion: [[Double]] {
        let bg = trueNegative + falsePositive, fg = truePositive + falseNegative
        return [[ratio(trueNegative, bg), ratio(falsePositive, bg)], [ratio(falseNegative, fg), ratio(truePositive, fg)]]
    }

    private func ratio(_ a: Int, _ b: Int, empty: Double = 0) -> Double { b == 0 ? empty : Double(a) / Double(b) }
}

/// The threshold on the particle probability that maximises pixel accuracy over a set of images:
/// a search over every threshold at the resolution of a fine histogram (4096 bins over [0, 1]),
/// not a hill-climb, so it finds the global best even when accuracy has several local maxima.
public struct ThresholdSearch: Sendable {
    public static let bins = 4096
    /// Pixel counts by probability: index 0 for p <= 0 (or NaN), b >= 1 for p in ((b − 1)/bins,
    /// b/bins] (above 1: the last). A pixel exactly on an edge t goes below it, as the mask's
    /// p > t rule calls it background there.
    var particle = [Int](repeating: 0, count: ThresholdSearch.bins + 1)
    var background = [Int](repeating: 0, count: ThresholdSearch.bins + 1)

    public init() {}

    static func bin(_ p: Float) -> Int {
        guard p > 0 else { return 0 }  // NaN too: p > t is false for every t
        return min(bins, Int((p * Float(bins)).rounded(.up)))
    }

    /// Adds one image's probabilities and truth.
    public mutating func add(probability: [Float], truth: BinaryMask) {
        precondition(probability.count == truth.values.count, "ThresholdSearch: \(probability.count) probabilities for \(truth.values.count) pixels")
        for (p, t) in zip(probability, truth.values) {
            if t != 0 { particle[Self.bin(p)] += 1 } else { background[Self.bin(p)] += 1 }
        }
    }

    /// The best threshold t (particle where p > t, t on a bin edge e/bins) and the pixel accuracy
    /// there. Ties go to the threshold nearest 0.5.
    public func best() -> (threshold: Float, accuracy: Double) {
        let total = particle.reduce(0, +) + background.reduce(0, +)
        guard total > 0 else { return (0.5, 0) }
        // At edge e the pixels of bins 0...e are background, the rest particle.
        var correct = background[0] + particle.dropFirst().reduce(0, +)
        var best = (edge: 0, correct: -1)
        func consider(_ edge: Int, _ c: Int) {
            let t = Double(edge) / Double(Self.bins)
            if c > best.correct || (c == best.correct && abs(t - 0.5) < abs(Double(best.edge) / Double(Self.bins) - 0.5)) {
                best = (edge, c)
            }
        }
        consider(0, correct)
        for e in 1...Self.bins {
            correct += background[e] - particle[e]
            consider(e, correct)
        }
        return (Float(best.edge) / Float(Self.bins), Double(best.correct) / Double(total))
    }
}
