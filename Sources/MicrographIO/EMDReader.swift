import Foundation
import NanoHDF5

/// Electron Microscopy Dataset files (HDF5): Thermo Fisher Velox EMD and Berkeley EMD.
///
/// * Velox: every `Data/Image/<uuid>/Data` dataset, stored (height, width, frames), becomes a
///   `Micrograph` of frames × height × width. Calibration and metadata come from the uint8
///   `Metadata` dataset beside it (NUL-padded JSON, one column per frame; the first is used).
/// * Berkeley: every group with attribute `emd_group_type = 1`; its `data` is read as stored
///   (leading axes are frames), pixel size = `dimN[1] − dimN[0]` in the `units` of `dimN`.
public enum EMDReader {
    static let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
    /// Groups visited, and links listed, at most while looking for Berkeley data groups.
    static let maxGroupsVisited = 10_000
    static let maxLinksListed = 20_000
    static let maxGroupDepth = 8

    /// True when the HDF5 signature sits at offset 0, 512, 1024, 2048, … (where HDF5 looks for it).
    public static func isHDF5(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset + signature.count <= bytes.count {
            if bytes[offset..<(offset + signature.count)].elementsEqual(signature) { return true }
            offset = offset == 0 ? 512 : offset * 2
        }
        return false
    }

    public static func read(_ url: URL) throws -> [Micrograph] {
        let bytes = try readFileBytes(url)
        guard isHDF5(bytes) else { throw MicrographError(url: url, reason: "not an HDF5 file (no HDF5 signature)") }
        let heaps = try HDF5GlobalHeapCheck.validate(bytes, file: url.path)
        do {
            let h5 = try HDF5File(path: url.path)
            let root = h5.root
            if root.hasGroup("Data"), try root.group("Data").hasGroup("Image") {
                return try readVelox(try root.group("Data").group("Image"), url: url)
            }
            let groups = try berkeleyGroups(root)
            guard !groups.isEmpty else {
                throw MicrographError(url: url, reason: "HDF5 file is neither a Velox EMD (no Data/Image group) nor a Berkeley EMD (no group with emd_group_type = 1)")
            }
            var images: [Micrograph] = []
            for g in groups { images.append(try readBerkeley(g, root: root, url: url, bytes: bytes, heaps: heaps)) }
            return images
        } catch let e as HDF5Error {
            throw MicrographError(file: url.path, reason: e.reason)
        }
    }

    static func pixelType(_ c: HDF5ValueClass) -> PixelType? {
        switch c {
        case .integer(true, 1): return .int8
        case .integer(false, 1): return .uint8
        case .integer(true, 2): return .int16
        case .integer(false, 2): return .uint16
        case .integer(true, 4): return .int32
        case .integer(false, 4): return .uint32
        case .integer(true, 8): return .int64
        case .integer(false, 8): return .uint64
        case .float(4): return .float32
        case .float(8): return .float64
        default: return nil
        }
    }

    static func product(_ dims: ArraySlice<Int>, _ url: URL, _ what: String) throws -> Int {
        var n = 1
        for d in dims {
            let (m, o) = n.multipliedReportingOverflow(by: d)
            guard !o, d >= 0 else { throw MicrographError(url: url, reason: "\(what) has an impossible shape") }
            n = m
        }
        return n
    }

    /// Refuses datasets whose declared size the file cannot justify: unfiltered data must be
    /// stored in full, filtered (compressed) data may expand at most 1000-fold, and no dataset
    /// can occupy more bytes than the file has. Checked before anything is read.
    static func checkStorage(_ ds: HDF5Dataset, _ info: HDF5Dataset.Info, bytesPerValue: Int, url: URL) throws {
        let count = try product(info.shape[...], url, ds.path)
        let (needed, o) = count.multipliedReportingOverflow(by: bytesPerValue)
        guard !o else { throw MicrographError(url: url, reason: "\(ds.path) has an impossible shape \(info.shape)") }
        let stored = info.storageBytes
        guard stored >= 0, stored <= ds.file.fileSize else {
            throw MicrographError(url: url, reason: "\(ds.path) claims \(stored) bytes of storage, the file has \(ds.file.fileSize)")
        }
        let filters = try ds.filterCount()
        if filters == 0 {
            guard needed <= stored else {
                throw MicrographError(url: url, reason: "\(ds.path) declares shape \(info.shape) (\(needed) bytes) but the file stores \(stored) bytes of it")
            }
        } else {
            guard needed / 1000 <= stored else {
                throw MicrographError(url: url, reason: "\(ds.path) declares shape \(info.shape) (\(needed) bytes) from \(stored) compressed bytes")
            }
        }
    }

    // MARK: Velox

    static func readVelox(_ images: HDF5Group, url: URL) throws -> [Micrograph] {
        var out: [Micrograph] = []
        var unsupported: [String] = []
        let count = try images.childCount()
        guard count <= maxLinksListed else {
            throw MicrographError(url: url, reason: "Velox group \(images.path) claims \(count) images")
        }
        for name in try images.childNames() where images.hasGroup(name) {
            let g = try images.group(name)
            guard g.hasDataset("Data") else { continue }
            let ds = try g.dataset("Data")
            let info = try ds.info()
            let what = "\(ds.path)"
            guard info.shape.count == 3 || info.shape.count == 2 else {
                throw MicrographError(url: url, reason: "\(what) has shape \(info.shape), expected (height, width, frames)")
            }
            // A Velox FFT or DPC image (pairs of floats) is left out; the file's other images are read.
            guard let type = pixelType(info.valueClass) else {
                unsupported.append("\(what) (\(info.valueClass))")
                continue
            }
            let height = info.shape[0], width = info.shape[1]
            let frames = info.shape.count == 3 ? info.shape[2] : 1
            guard height >= 1, width >= 1, frames >= 1 else {
                throw MicrographError(url: url, reason: "\(what) is empty (shape \(info.shape))")
            }
            try checkStorage(ds, info, bytesPerValue: type.byteCount, url: url)
            let raw = try ds.readNativeBytes()
            let b = type.byteCount
            let count = try product(info.shape[...], url, what)
            guard raw.count == count * b else {
                throw MicrographError(url: url, reason: "\(what) returned \(raw.count) bytes, its shape \(info.shape) needs \(count * b)")
            }
            // (y, x, f) → (f, y, x)
            var data = [UInt8](repeating: 0, count: raw.count)
            if frames == 1 {
                data = raw
            } else {
                raw.withUnsafeBytes { src in
                    data.withUnsafeMutableBytes { dst in
                        for y in 0..<height {
                            for x in 0..<width {
                                let s = ((y * width + x) * frames) * b
                                for f in 0..<frames {
                                    let d = ((f * height + y) * width + x) * b
                                    for k in 0..<b { dst[d + k] = src[s + f * b + k] }
                                }
                            }
                        }
                    }
                }
            }
            var m = Micrograph(width: width, height: height, frames: frames, pixelType: type, data: data,
                               format: "emd-velox", source: url)
            if g.hasDataset("Metadata"), let json = try veloxMetadata(try g.dataset("Metadata"), url: url) {
                applyVelox(json, to: &m)
            }
            m.metadata.extra["velox_uuid"] = name
            out.append(m)
        }
        if out.isEmpty, let first = unsupported.first {
            throw MicrographError(url: url, reason: "\(first) has an unsupported pixel type\(unsupported.count > 1 ? ", as have its \(unsupported.count - 1) other images" : "")")
        }
        guard !out.isEmpty else { throw MicrographError(url: url, reason: "Velox EMD has no image under Data/Image") }
        if !unsupported.isEmpty {
            for k in out.indices { out[k].metadata.extra["velox_images_not_read"] = unsupported.joined(separator: "; ") }
        }
        return out
    }

    /// The first frame's metadata JSON: column 0 of the (length, frames) uint8 dataset, up to the first NUL.
    static func veloxMetadata(_ ds: HDF5Dataset, url: URL) throws -> [String: Any]? {
        let info = try ds.info()
        guard case .integer(_, 1) = info.valueClass, info.shape.count == 1 || info.shape.count == 2 else { return nil }
        let columns = info.shape.count == 2 ? info.shape[1] : 1
        guard columns >= 1 else { return nil }
        try checkStorage(ds, info, bytesPerValue: 1, url: url)
        let raw = try ds.readNativeBytes()
        var text: [UInt8] = []
        var i = 0
        while i < raw.count, raw[i] != 0 { text.append(raw[i]); i += columns }
        guard !text.isEmpty,
              let obj = try? JSONSerialization.jsonObject(with: Data(text)) as? [String: Any] else {
            return nil
        }
        return obj
    }

    static func jsonValue(_ json: [String: Any], _ path: String...) -> Any? {
        var cur: Any? = json
        for p in path { cur = (cur as? [String: Any])?[p] }
        return cur
    }

    static func jsonString(_ json: [String: Any], _ path: String...) -> String? {
        var cur: Any? = json
        for p in path { cur = (cur as? [String: Any])?[p] }
        if let s = cur as? String { return s.isEmpty ? nil : s }
        if let n = cur as? NSNumber { return n.stringValue }
        return nil
    }

    static func applyVelox(_ json: [String: Any], to m: inout Micrograph) {
        if let wx = jsonString(json, "BinaryResult", "PixelSize", "width").flatMap(Double.init),
           let wy = jsonString(json, "BinaryResult", "PixelSize", "height").flatMap(Double.init),
           wx.isFinite, wy.isFinite, wx > 0, wy > 0 {
            let ux = jsonString(json, "BinaryResult", "PixelUnitX") ?? "m"
            let uy = jsonString(json, "BinaryResult", "PixelUnitY") ?? ux
            m.storedCalibration = StoredCalibration(x: wx, y: wy, unitX: ux, unitY: uy)
            if let fx = LengthUnit.nanometres(per: ux), let fy = LengthUnit.nanometres(per: uy) {
                m.pixelSize = PixelSize(x: wx * fx, y: wy * fy)
            }
        }
        if let v = jsonString(json, "Optics", "AccelerationVoltage").flatMap(Double.init), v.isFinite, v > 0 {
            m.metadata.voltageKV = v / 1000
        }
        if let mag = jsonString(json, "Optics", "NominalMagnification").flatMap(Double.init), mag.isFinite, mag > 0 {
            m.metadata.magnification = mag
        }
        if let t = jsonString(json, "Acquisition", "AcquisitionStartDatetime", "DateTime").flatMap(Double.init),
           t.isFinite, t > 0, t < 1e11 {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(secondsFromGMT: 0)
            f.dateFormat = "yyyy-MM-dd'T'HH:mm:ssxxx"
            m.metadata.acquisitionDate = f.string(from: Date(timeIntervalSince1970: t))
        }
        m.metadata.detector = jsonString(json, "BinaryResult", "Detector")
        m.metadata.microscope = jsonString(json, "Instrument", "InstrumentModel")
        if let unit = jsonString(json, "BinaryResult", "AcquisitionUnit") { m.metadata.extra["acquisition_unit"] = unit }
    }

    // MARK: Berkeley

    /// Groups with attribute emd_group_type = 1, breadth-first in name order, with limits.
    static func berkeleyGroups(_ root: HDF5Group) throws -> [HDF5Group] {
        var found: [HDF5Group] = []
        var queue: [(HDF5Group, Int)] = [(root, 0)]
        var visited = 0, listed = 0
        while !queue.isEmpty {
            let (g, depth) = queue.removeFirst()
            visited += 1
            if visited > maxGroupsVisited { break }
            if let a = try? g.attribute("emd_group_type"), (try? a.read())?.numbers?.first == 1 {
                found.append(g)
                continue
            }
            guard depth < maxGroupDepth else { continue }
            listed += try g.childCount()
            guard listed <= maxLinksListed else {
                throw MicrographError(file: root.file.path, reason: "HDF5 groups hold more than \(maxLinksListed) links (at \(g.path)); not an EMD file")
            }
            for n in try g.childNames() where g.hasGroup(n) { queue.append((try g.group(n), depth + 1)) }
        }
        return found
    }

    static func readBerkeley(_ g: HDF5Group, root: HDF5Group, url: URL, bytes: [UInt8],
                             heaps: HDF5GlobalHeapCheck.Collections) throws -> Micrograph {
        let ds = try g.dataset("data")
        let info = try ds.info()
        let what = ds.path
        guard info.shape.count >= 2 else {
            throw MicrographError(url: url, reason: "\(what) has shape \(info.shape); an image needs 2 dimensions")
        }
        guard let type = pixelType(info.valueClass) else {
            throw MicrographError(url: url, reason: "\(what) has an unsupported pixel type \(info.valueClass)")
        }
        let rank = info.shape.count
        let height = info.shape[rank - 2], width = info.shape[rank - 1]
        let frames = try product(info.shape.dropLast(2), url, what)
        guard width >= 1, height >= 1, frames >= 1 else {
            throw MicrographError(url: url, reason: "\(what) is empty (shape \(info.shape))")
        }
        try checkStorage(ds, info, bytesPerValue: type.byteCount, url: url)
        let data = try ds.readNativeBytes()
        guard data.count == width * height * frames * type.byteCount else {
            throw MicrographError(url: url, reason: "\(what) returned \(data.count) bytes for shape \(info.shape)")
        }
        var m = Micrograph(width: width, height: height, frames: frames, pixelType: type, data: data,
                           format: "emd-berkeley", source: url)
        // The dim units are variable-length strings: check their stored lengths first (the image
        // data itself is not searched, so pixel values cannot look like a corrupt reference).
        var imageBytes: [Range<Int>] = []
        if let offset = try ds.contiguousOffset(), offset >= 0, offset <= bytes.count {
            imageBytes.append(offset..<min(bytes.count, offset + data.count))
        }
        try HDF5GlobalHeapCheck.checkReferences(bytes, heaps, excluding: imageBytes, file: url.path)
        // dim<rank-1> runs along rows (y), dim<rank> along columns (x).
        if let (sy, uy) = try berkeleyStep(g, rank - 1), let (sx, ux) = try berkeleyStep(g, rank) {
            m.storedCalibration = StoredCalibration(x: sx, y: sy, unitX: ux, unitY: uy)
            if let fx = LengthUnit.nanometres(per: ux), let fy = LengthUnit.nanometres(per: uy) {
                m.pixelSize = PixelSize(x: sx * fx, y: sy * fy)
            }
        }
        m.metadata.extra["title"] = g.path.split(separator: "/").last.map(String.init) ?? g.path
        // Numbers only: every string read goes through libhdf5's variable-length conversion, which
        // trusts the stored length (a corrupt one makes it allocate and clear up to 4 GiB). Only
        // the dim units, which the calibration needs, are read as strings.
        if root.hasGroup("microscope"), let mic = try? root.group("microscope") {
            func attr(_ name: String) -> HDF5Values? { (try? mic.attribute(name)).flatMap { try? $0?.read() } }
            if let v = attr("high tension")?.numbers?.first, v.isFinite, v > 0 { m.metadata.voltageKV = v / 1000 }
            if let v = attr("magnification")?.numbers?.first, v.isFinite, v > 0 { m.metadata.magnification = v }
        }
        return m
    }

    /// Step and unit of dim vector `n`; nil when it is missing, too short or has no length unit.
    static func berkeleyStep(_ g: HDF5Group, _ n: Int) throws -> (Double, String)? {
        guard g.hasDataset("dim\(n)") else { return nil }
        let d = try g.dataset("dim\(n)")
        let info = try d.info()
        guard info.shape.count == 1, info.shape[0] >= 2, info.shape[0] <= 1 << 24 else { return nil }
        // Only plain numbers: a corrupt type (say a 4-GB "float") makes libhdf5 convert for seconds.
        switch info.valueClass {
        case .float(let b) where b == 4 || b == 8: break
        case .integer(_, let b) where b <= 8: break
        default: return nil
        }
        let bytesPerValue: Int
        switch info.valueClass { case .float(let b), .integer(_, let b): bytesPerValue = b; default: bytesPerValue = 8 }
        try checkStorage(d, info, bytesPerValue: bytesPerValue, url: URL(fileURLWithPath: d.file.path))
        let v = try d.readFloats()
        guard v.count >= 2 else { return nil }
        let step = Double(v[1]) - Double(v[0])
        guard step.isFinite, step > 0,
              let unit = try d.attribute("units")?.readStrings()?.first,
              !unit.isEmpty, unit != "[]" else { return nil }
        return (step, unit)
    }
}
