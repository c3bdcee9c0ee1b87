import Preprocessing
import Training
import XCTest

final class MetricsAndThresholdTests: XCTestCase {
    func testConfusionCountsAndScoresByHand() {
        // truth:     1 1 0 0 1 0     prediction: 1 0 1 0 1 0  → TP 2, FN 1, FP 1, TN 2
        let truth = BinaryMask(width: 6, height: 1, values: [1, 1, 0, 0, 1, 0])
        let pred = BinaryMask(width: 6, height: 1, values: [1, 0, 1, 0, 1, 0])
        let c = ConfusionCounts(predicted: pred, truth: truth)
        XCTAssertEqual(c, ConfusionCounts(truePositive: 2, falsePositive: 1, trueNegative: 2, falseNegative: 1))
        XCTAssertEqual(c.pixelAccuracy, 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(c.dice, 4.0 / 6, accuracy: 1e-12)          // 2·2 / (2·2 + 1 + 1)
        XCTAssertEqual(c.iou, 2.0 / 4, accuracy: 1e-12)
        XCTAssertEqual(c.precision, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(c.recall, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(c.normalisedConfusion[0], [2.0 / 3, 1.0 / 3])
        XCTAssertEqual(c.normalisedConfusion[1], [1.0 / 3, 2.0 / 3])
        // Pooling adds counts: an image with an empty truth and one false positive.
        let empty = ConfusionCounts(predicted: BinaryMask(width: 2, height: 1, values: [1, 0]), truth: BinaryMask(width: 2, height: 1))
        XCTAssertEqual(empty.dice, 0)
        XCTAssertEqual((c + empty).dice, 4.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(ConfusionCounts(predicted: BinaryMask(width: 2, height: 1), truth: BinaryMask(width: 2, height: 1)).dice, 1)
        // Nothing predicted: precise only where there was nothing to find.
        XCTAssertEqual(ConfusionCounts(predicted: BinaryMask(width: 2, height: 1), truth: BinaryMask(width: 2, height: 1)).precision, 1)
        let missedAll = ConfusionCounts(predicted: BinaryMask(width: 2, height: 1), truth: BinaryMask(width: 2, height: 1, values: [1, 0]))
        XCTAssertEqual(missedAll.precision, 0)
        XCTAssertEqual(missedAll.recall, 0)
    }

    func testThresholdSearchFindsTheKnownBest() {
        // Particles: p uniform in [0.6, 1); background: 3000 in [0, 0.3) and 400 in [0.70, 0.72).
        // Accuracy is flat for t in [0.3, 0.6) (4000 of 4400 right), falls to 0.70, and peaks at
        // t = 0.72: 700 particles + 3400 background = 4100.
        var probabilities: [Float] = [], truth: [UInt8] = []
        for k in 0..<1000 { probabilities.append(0.6 + 0.4 * Float(k) / 1000); truth.append(1) }
        for k in 0..<3000 { probabilities.append(0.3 * Float(k) / 3000); truth.append(0) }
        for k in 0..<400 { probabilities.append(0.7 + 0.0199 * Float(k) / 400); truth.append(0) }
        var search = ThresholdSearch()
        search.add(probability: probabilities, truth: BinaryMask(width: truth.count, height: 1, values: truth))
        let (t, accuracy) = search.best()
        XCTAssertEqual(t, 0.72, accuracy: 0.0005)
        XCTAssertEqual(accuracy, 4100.0 / 4400, accuracy: 0.0005)
        // A hill-climb from 0.5 would stay on the plateau (4000 right); the search must not.
    }

    /// Early stopping as Keras' EarlyStopping(min_delta=0.001, patience=2): decreases smaller than
    /// min_delta do not move the reference, so 1.0, 0.9995, 0.9986, 0.99, 0.98 runs all five
    /// epochs (0.9986 improves on 1.0); a reference lowered to 0.9995 would have stopped at 3.
    func testEarlyStoppingFollowsKeras() {
        var reference = Double.infinity, wait = 0, epochs = 0
        for loss in [1.0, 0.9995, 0.9986, 0.99, 0.98] {
            epochs += 1
            let step = Trainer.earlyStopping(reference: reference, loss: loss, minDelta: 0.001)
            reference = step.reference
            wait = step.improved ? 0 : wait + 1
            if wait >= 2 { break }
        }
        XCTAssertEqual(epochs, 5)
        XCTAssertEqual(reference, 0.98)
        XCTAssertFalse(Trainer.earlyStopping(reference: 1.0, loss: 0.9995, minDelta: 0.001).improved)
        XCTAssertEqual(Trainer.earlyStopping(reference: 1.0, loss: 0.9995, minDelta: 0.001).reference, 1.0)
    }

    /// The accuracy the search reports is the one the mask at its threshold has (p > t), also for
    /// probabilities exactly on a bin edge (0.5 where two logits are equal, 0, 1) and NaN.
    func testThresholdSearchAgreesWithTheMaskItChooses() {
        var rng = SeededRandom(seed: 5)
        for round in 0..<20 {
            var probabilities: [Float] = [], truth: [UInt8] = []
            for _ in 0..<2000 {
                let edge = Float(Int(rng.nextFloat() * 4097)) / 4096
                let p: Float = rng.nextFloat() < 0.5 ? edge : (rng.nextFloat() < 0.02 ? .nan : rng.nextFloat())
                probabilities.append(p)
                truth.append(rng.nextFloat() < (p.isNaN ? 0.5 : p) ? 1 : 0)
            }
            if round == 0 { for k in 0..<500 { probabilities[k] = 0.5; truth[k] = 1 } }  // ties at 0.5, all particles
            var search = ThresholdSearch()
            let mask = BinaryMask(width: truth.count, height: 1, values: truth)
            search.add(probability: probabilities, truth: mask)
            let (t, accuracy) = search.best()
            let predicted = BinaryMask(FloatImage(width: probabilities.count, height: 1, pixels: probabilities), threshold: t)
            XCTAssertEqual(ConfusionCounts(predicted: predicted, truth: mask).pixelAccuracy, accuracy, accuracy: 1e-12, "round \(round), t \(t)")
            if round == 0 { XCTAssertLessThan(t, 0.5, "0.5 itself would call the 500 particles at p = 0.5 background") }
        }
    }
}
