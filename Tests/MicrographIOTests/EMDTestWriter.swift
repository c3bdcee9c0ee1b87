import Foundation
import MicrographIO
import NanoHDF5

/// Writes small Velox and Berkeley EMD files for tests (through NanoHDF5's writer).
enum EMDTestWriter {
    static func valueClass(_ t: PixelType) -> HDF5ValueClass {
        switch t {
        case .int8: return .integer(signed: true, bytes: 1)
        case .uint8, .bool: return .integer(signed: false, bytes: 1)
        case .int16: return .integer(signed: true, bytes: 2)
        case .uint16: return .integer(signed: false, bytes: 2)
        case .int32: return .integer(signed: true, bytes: 4)
        case .uint32: return .integer(signed: false, bytes: 4)
        case .int64: return .integer(signed: true, bytes: 8)
        case .uint64: return .integer(signed: false, bytes: 8)
        case .float32: return .float(bytes: 4)
        default: return .float(bytes: 8)
        }
    }

    static let veloxJSON = """
    {"Core":{"MetadataDefinitionVersion":"7.9"},"Instrument":{"InstrumentModel":"Titan"},\
    "Acquisition":{"AcquisitionStartDatetime":{"DateTime":"1596041299"}},\
    "Optics":{"AccelerationVoltage":"300000","NominalMagnification":"1250000"},\
    "BinaryResult":{"Detector":"HAADF","PixelSize":{"width":"2e-10","height":"3e-10"},"PixelUnitX":"m","PixelUnitY":"m"}}
    """

    /// A Velox file with one image: `frames` (native LE, frame-major, row-major) stored as (height, width, frames).
    static func velox(_ url: URL, type: PixelType, width: Int, height: Int, frames: Int, pixels: [UInt8]) throws {
        let w = try HDF5Writer(path: url.path)
        defer { w.close() }
        let b = type.byteCount
        var stored = [UInt8](repeating: 0, count: pixels.count)
        for f in 0..<frames {
            for y in 0..<height {
                for x in 0..<width {
                    let src = ((f * height + y) * width + x) * b
                    let dst = ((y * width + x) * frames + f) * b
                    stored.replaceSubrange(dst..<(dst + b), with: pixels[src..<(src + b)])
                }
            }
        }
        try w.createGroup("/Data")
        try w.createGroup("/Data/Image")
        let g = "/Data/Image/0123456789abcdef0123456789abcdef"
        try w.createGroup(g)
        try w.writeDataset(g + "/Data", shape: [height, width, frames], valueClass: valueClass(type), bytes: stored)
        // Metadata: one NUL-padded JSON column per frame.
        let json = Array(veloxJSON.utf8)
        let length = json.count + 64
        var meta = [UInt8](repeating: 0, count: length * frames)
        for f in 0..<frames { for (i, c) in json.enumerated() { meta[i * frames + f] = c } }
        try w.writeDataset(g + "/Metadata", shape: [length, frames], valueClass: .integer(signed: false, bytes: 1), bytes: meta)
        try w.writeDataset("/Version", shape: [1], valueClass: .integer(signed: false, bytes: 1), bytes: [1])
    }

    /// A Berkeley EMD file: `data` of shape `shape` (leading axes frames), dim vectors with a
    /// variable-length `units` string (held in the global heap).
    static func berkeley(_ url: URL, type: PixelType, shape: [Int], pixels: [UInt8], step: Double, units: String) throws {
        let w = try HDF5Writer(path: url.path)
        defer { w.close() }
        try w.setAttribute("/", "version_major", numbers: [0], integer: true)
        try w.setAttribute("/", "version_minor", numbers: [2], integer: true)
        try w.createGroup("/data")
        try w.createGroup("/data/sample")
        try w.setAttribute("/data/sample", "emd_group_type", numbers: [1], integer: true)
        try w.writeDataset("/data/sample/data", shape: shape, valueClass: valueClass(type), bytes: pixels)
        for (k, n) in shape.enumerated() {
            let v = (0..<n).map { Float(Double($0) * step) }
            let bytes = v.withUnsafeBytes { Array($0) }
            try w.writeDataset("/data/sample/dim\(k + 1)", shape: [n], valueClass: .float(bytes: 4), bytes: bytes)
            try w.setAttribute("/data/sample/dim\(k + 1)", "name", string: ["Z", "Y", "X"].suffix(shape.count)[k + 3 - shape.count], variableLength: true)
            try w.setAttribute("/data/sample/dim\(k + 1)", "units", string: units, variableLength: true)
        }
        try w.createGroup("/microscope")
        try w.setAttribute("/microscope", "high tension", numbers: [200_000])
        try w.setAttribute("/microscope", "name", string: "TEAM 0.5")
    }
}
