import ArgumentParser
import Foundation
import NanoNet

struct ConvertModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert-model",
        abstract: "Convert a Keras-2 .h5 weight file (e.g. a published pyNanoFind model) to a NanoFind .safetensors model.",
        discussion: "The model file records the architecture, threshold and preprocessing, so `segment` needs nothing else.")

    @Argument(help: "Model to convert (.h5 or .safetensors).") var input: String
    @Option(name: [.short, .customLong("output")], help: "The .safetensors file to write.") var output: String
    @Option(parsing: .unconditional, help: "Threshold to record (default: keep the model's).") var threshold: Float?
    /// Set by `IsolatedReader.loadModel` for the child that reads a Keras .h5 file: it loads in
    /// process. Run by a user, the command reads an .h5 in such a child too, so a fault inside
    /// libhdf5 on a hostile file ends as one error line.
    @Flag(name: .customLong("in-child"), help: .hidden) var inChild = false

    func run() throws {
        if let threshold, !(threshold.isFinite && (0...1).contains(threshold)) {
            throw ValidationError("--threshold must be in [0, 1]")
        }
        // Test hook, as in read-isolated: lets the CLI tests check that libhdf5 dying while a
        // Keras model is converted in the isolating child is reported on one line.
        if inChild && ProcessInfo.processInfo.environment["NANOFIND_TEST_MODEL_FAULT"] == "signal" {
            signal(SIGSEGV, SIG_DFL)
            raise(SIGSEGV)
        }
        do {
            let url = URL(fileURLWithPath: input)
            let out = URL(fileURLWithPath: output)
            if out.resolvingSymlinksInPath().standardizedFileURL.path == url.resolvingSymlinksInPath().standardizedFileURL.path {
                throw ModelFileError(file: output, reason: "is the input; convert-model writes a new file (-o another path)")
            }
            // As train: a file that is there is replaced only when it is a NanoFind model (never a
            // Keras weight file, a checkpoint, or notes given as -o by a slip).
            // (A folder or a device is refused where the model is written.)
            if (try? FileManager.default.attributesOfItem(atPath: out.path))?[.type] as? FileAttributeType == .typeRegular,
               (try? SafeTensorsModel.load(out)) == nil {
                throw ModelFileError(file: output, reason: "exists and is not a NanoFind model; convert-model will not replace it")
            }
            if inChild { IsolatedReader.limitAddressSpace(for: url) }
            var model = inChild ? try Model.load(url) : try IsolatedReader.loadModel(url)
            if let threshold { model.metadata.threshold = threshold }
            try SafeTensorsModel.save(model, to: URL(fileURLWithPath: output))
        } catch {
            throw exitWithInputError(error)
        }
    }
}
