import Foundation
import MicrographIO
import NanoNet

/// What a fuzzing harness feeds its inputs to: one reader or model-file parser each, the same
/// entry points `nanofind` uses. `run` must return (an error thrown for a bad input is the
/// expected outcome); a crash, a hang or an allocation beyond libFuzzer's limits is a finding.
/// `make fuzz TARGET=…` runs one under libFuzzer and AddressSanitizer; the tests replay every
/// saved finding through the same `run`.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case mrc, tiff, dm, ser, emi, png, npy, safetensors, emd, h5model

    /// The file name extension seed files of this target carry.
    public var fileExtension: String {
        switch self {
        case .mrc: return "mrc"
        case .tiff: return "tif"
        case .dm: return "dm4"
        case .ser: return "ser"
        case .emi: return "emi"
        case .png: return "png"
        case .npy: return "npy"
        case .safetensors: return "safetensors"
        case .emd: return "emd"
        case .h5model: return "h5"
        }
    }

    /// Readers that libtiff or libhdf5 run read a path, so their input goes through a file.
    var needsFile: Bool { self == .tiff || self == .emd || self == .h5model }

    /// Parses `bytes`; returns whether the input was accepted (false: rejected with an error).
    @discardableResult
    public func run(_ bytes: [UInt8]) -> Bool {
        let url = URL(fileURLWithPath: "/fuzz/input.\(fileExtension)")
        do {
            switch self {
            case .mrc: _ = try MRCReader.parse(bytes, url: url)
            case .dm: _ = try DMReader.parse(bytes, url: url)
            case .ser: _ = try SERReader.parse(bytes, url: url)
            case .emi:  // what a SER reader takes from its companion: the metadata and the unit rule
                guard let info = EMIInfo.parse(bytes) else { return false }
                _ = (info.metadata, info.isReciprocal)
            case .png: _ = try PNGReader.parse(bytes, url: url)
            case .npy: _ = try NPYFile.micrograph(from: try NPYFile.parse(bytes, file: url.path), url: url)
            case .safetensors: _ = try SafeTensorsModel.load(Data(bytes), file: url.path)
            case .tiff, .emd, .h5model: return try throughFile(bytes)
            }
            return true
        } catch {
            return false
        }
    }

    /// Writes the input to a file of this process's own and reads it back by path.
    func throughFile(_ bytes: [UInt8]) throws -> Bool {
        let file = FuzzTarget.scratch.appendingPathComponent("input-\(getpid()).\(fileExtension)")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        switch self {
        case .tiff: _ = try TIFFReader.read(file)
        case .emd: _ = try EMDReader.read(file)
        case .h5model: _ = try KerasWeights.load(file)
        default: break
        }
        return true
    }

    /// Memory-backed when the system has it (the fuzzer writes a file per input).
    static let scratch: URL = {
        let shm = URL(fileURLWithPath: "/dev/shm")
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: shm.path, isDirectory: &isDir), isDir.boolValue { return shm }
        return FileManager.default.temporaryDirectory
    }()
}
