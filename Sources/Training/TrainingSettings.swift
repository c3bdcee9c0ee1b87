import NanoNet

/// Every knob of a training run. The defaults follow the paper's training script: 3×3 median and
/// min-max scaling, rotation 0–360° with wrap and flips, a 75/25 train/validation split, Adam
/// 1e-4, categorical cross-entropy, batch 20 of 512² tiles, 1000 steps per epoch, at most 10
/// epochs, early stopping on validation loss (patience 2, min delta 0.001). Where they differ
/// from it: the best epoch's weights are kept (the published files are the last epoch's), the
/// validation images are 25 % of each material (Keras' validation_split takes the array's last
/// 25 %) scored whole, the dice loss is the particle channel's, and crops are centred anywhere
/// (wrapping at the edges) where the paper's generator only turns each 512² image about its
/// centre (`--crops inside` is that, for a crop as large as the image).
public struct TrainingSettings: Codable, Sendable, Equatable {
    public var epochs = 10
    public var stepsPerEpoch = 1000
    public var batchSize = 20
    public var tile = 512
    public var learningRate: Float = 1e-4
    /// `constant`, or `cosine`: decays to 1 % of the rate over all epochs.
    public var schedule: LearningRateSchedule = .constant
    public var loss: Loss = .crossEntropy
    public var widths: [Int] = [4, 8, 16, 32]
    public var augment: AugmentationPreset = .paper
    /// Where crops are centred: `wrap` (anywhere, with Keras' wrap fill) or `inside` (no seams;
    /// for a crop as large as the image, the paper's generator exactly).
    public var crops: CropPlacement = .wrap
    public var recipe: InputRecipe = .pyNanoFind
    public var seed: UInt64 = 0
    public var validationFraction = 0.25
    public var patience = 2
    public var minDelta = 0.001
    /// The model whose weights the run starts from (`train --from`: fine-tuning), as given; nil:
    /// random weights drawn from the seed.
    public var initialModel: String? = nil

    public init() {}

    /// Settings as a checkpoint records them; a key an older build did not write (`crops`) takes
    /// its default, so a run started before it was added resumes as it started.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try c.decode(Int.self, forKey: .epochs)
        stepsPerEpoch = try c.decode(Int.self, forKey: .stepsPerEpoch)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        tile = try c.decode(Int.self, forKey: .tile)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        schedule = try c.decode(LearningRateSchedule.self, forKey: .schedule)
        loss = try c.decode(Loss.self, forKey: .loss)
        widths = try c.decode([Int].self, forKey: .widths)
        augment = try c.decode(AugmentationPreset.self, forKey: .augment)
        crops = try c.decodeIfPresent(CropPlacement.self, forKey: .crops) ?? .wrap
        recipe = try c.decode(InputRecipe.self, forKey: .recipe)
        seed = try c.decode(UInt64.self, forKey: .seed)
        validationFraction = try c.decode(Double.self, forKey: .validationFraction)
        patience = try c.decode(Int.self, forKey: .patience)
        minDelta = try c.decode(Double.self, forKey: .minDelta)
        initialModel = try c.decodeIfPresent(String.self, forKey: .initialModel)
    }

    public enum LearningRateSchedule: String, Codable, Sendable, CaseIterable { case constant, cosine }

    /// The network the settings describe (centre as wide as the deepest encoder stage).
    public var config: UNetConfig { UNetConfig(widths: widths, centreWidth: widths.last ?? 32) }

    /// Why these settings cannot train a network, naming the flag; nil when they can.
    public var problem: String? {
        if epochs < 1 || epochs > 10_000 { return "--epochs must be between 1 and 10000" }
        if stepsPerEpoch < 1 || stepsPerEpoch > 1_000_000 { return "--steps-per-epoch must be between 1 and 1000000" }
        if batchSize < 1 || batchSize > 256 { return "--batch-size must be between 1 and 256" }
        if !(learningRate > 0 && learningRate < 1) { return "--lr must be in (0, 1)" }
        if !(validationFraction >= 0 && validationFraction < 1) { return "the validation fraction must be in [0, 1)" }
        if patience < 1 || patience > 10_000 { return "--patience must be between 1 and 10000 (epochs)" }
        if let p = config.problem { return "--widths \(widths.map(String.init).joined(separator: ",")) make no network: \(p)" }
        let a = config.sizeMultiple
        if tile < a || tile % a != 0 || tile > 4096 {
            return "--tile \(tile) must be a multiple of \(a) (one 2×2 pooling per encoder stage) between \(a) and 4096"
        }
        if let p = recipe.problem { return "--normalise: \(p)" }
        // The robust preset's contrast, gamma and noise jitter act on values in [0, 1].
        if augment == .robust && recipe.scaling != .minMax && recipe.scaling != .percentile {
            return "--augment robust jitters contrast, gamma and noise on data scaled to [0, 1]: use it with --normalise median3+min-max, min-max, median3+percentile or percentile"
        }
        return nil
    }

    /// The learning rate at a step.
    public func learningRate(atStep step: Int) -> Float {
        guard schedule == .cosine else { return learningRate }
        let total = Double(epochs * stepsPerEpoch)
        let f = 0.01 + 0.99 * 0.5 * (1 + cos(Double.pi * min(1, Double(step) / total)))
        return learningRate * Float(f)
    }

    /// Every setting by its flag name, for the model file.
    public var asFlags: [String: String] {
        ["epochs": "\(epochs)", "steps-per-epoch": "\(stepsPerEpoch)", "batch-size": "\(batchSize)", "tile": "\(tile)",
         "lr": "\(learningRate)", "lr-schedule": schedule.rawValue, "loss": loss.rawValue,
         "widths": widths.map(String.init).joined(separator: ","), "augment": augment.rawValue,
         "normalise": recipe.description, "seed": "\(seed)", "validation-fraction": "\(validationFraction)",
         "patience": "\(patience)", "min-delta": "\(minDelta)"]
            .merging(crops == .wrap ? [:] : ["crops": crops.rawValue]) { $1 }  // (models made before the flag carry none)
            .merging(initialModel.map { ["from": $0] } ?? [:]) { $1 }
    }
}

import Foundation
