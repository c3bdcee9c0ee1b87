import ArgumentParser
import Foundation
import NanoNet
import NanoTensor
import Segmentation

/// `--threads`, for every command that computes.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Worker threads (default: one per available CPU).") var threads: Int?

    func validate() throws {
        if let threads, !(1...256).contains(threads) { throw ValidationError("--threads must be between 1 and 256") }
    }

    func apply() { if let threads { ThreadPool.setSharedThreadCount(threads) } }
}

/// How to prepare a micrograph for the network.
enum PreprocessChoice: String, ExpressibleByArgument, CaseIterable {
    /// What the model file records.
    case model
    case none
    /// pyNanoFind: 3×3 median, per-image min-max.
    case pyNanoFind = "median3+max"
    /// 3×3 median, per-image 0.5–99.5 % percentiles.
    case robust = "median3+percentile"

    /// The recipe to use instead of the model's, nil for the model's own.
    var recipe: InputRecipe? {
        switch self {
        case .model: return nil
        case .none: return InputRecipe.none
        case .pyNanoFind: return .pyNanoFind
        case .robust: return .robust
        }
    }
}

/// `--model` and `--preprocess`, for every command that runs a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model file: a NanoFind .safetensors model or a Keras-2 .h5 weight file (default: Models/default.safetensors).")
    var model: String?
    @Option(help: "Input preparation: \(PreprocessChoice.allCases.map(\.rawValue).joined(separator: ", ")) ('model': what the model file records).")
    var preprocess: PreprocessChoice = .model

    /// The model, or a one-line error (exit 2).
    func load() throws -> Model {
        do {
            guard let model else { return try DefaultModel.load() }
            return try Model.load(URL(fileURLWithPath: model))
        } catch {
            throw exitWithInputError(error)
        }
    }
}
