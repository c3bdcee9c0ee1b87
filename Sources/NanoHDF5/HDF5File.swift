import CHDF5
import Foundation

/// A failure reading an HDF5 file: names the file and what is wrong.
public struct HDF5Error: Error, CustomStringConvertible, LocalizedError, Sendable {
    public var file: String
    public var reason: String
    public init(file: String, reason: String) { self.file = file; self.reason = reason }
    public var description: String { "\(file): \(reason)" }
    public var errorDescription: String? { description }
}

/// What kind of values a dataset or attribute holds.
public enum HDF5ValueClass: Equatable, Sendable {
    case integer(signed: Bool, bytes: Int)
    case float(bytes: Int)
    case string
    case other
}

/// A read-only HDF5 file. libhdf5's own error printing is switched off; every failure becomes
/// an `HDF5Error` naming the file and the object.
public final class HDF5File: @unchecked Sendable {
    public let path: String
    let id: hid_t
    /// Bytes on disk, used to refuse datasets whose declared size the file cannot hold.
    public let fileSize: Int

    static let lock = NSLock()  // libhdf5 is built without thread safety on most distributions

    public init(path: String) throws {
        self.path = path
        HDF5File.lock.lock(); defer { HDF5File.lock.unlock() }
        H5Eset_auto2(nf_h5e_default(), nil, nil)
        let attrs = try? FileManager.default.attributesOfItem(atPath: path)
        guard let size = attrs?[.size] as? NSNumber else {
            throw HDF5Error(file: path, reason: "no such file")
        }
        fileSize = size.intValue
        guard nf_h5_is_hdf5(path) > 0 else { throw HDF5Error(file: path, reason: "not an HDF5 file (no HDF5 signature)") }
        let fid = H5Fopen(path, nf_h5f_acc_rdonly(), nf_h5p_default())
        guard fid >= 0 else { throw HDF5Error(file: path, reason: "HDF5 file is corrupt or truncated (cannot open)") }
        id = fid
    }

    deinit {
        HDF5File.lock.lock(); defer { HDF5File.lock.unlock() }
        H5Fclose(id)
    }

    public var root: HDF5Group { HDF5Group(file: self, path: "/") }

    func fail(_ reason: String) -> HDF5Error { HDF5Error(file: path, reason: reason) }

    /// Runs `body` under the library lock.
    func locked<T>(_ body: () throws -> T) rethrows -> T {
        HDF5File.lock.lock(); defer { HDF5File.lock.unlock() }
        return try body()
    }
}

/// A group inside an `HDF5File`, addressed by its absolute path.
public struct HDF5Group: Sendable {
    public let file: HDF5File
    public let path: String

    /// Runs `body` with the group open and its info read, under the library lock.
    func withOpenGroup<T>(_ body: (hid_t, H5G_info_t) throws -> T) throws -> T {
        try file.locked {
            let gid = H5Gopen2(file.id, path, nf_h5p_default())
            guard gid >= 0 else { throw file.fail("cannot open group \(path)") }
            defer { H5Gclose(gid) }
            var info = H5G_info_t()
            guard H5Gget_info(gid, &info) >= 0 else { throw file.fail("cannot read group \(path)") }
            return try body(gid, info)
        }
    }

    func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// Names of the group's direct children (groups and datasets), in the file's index order.
    public func childNames() throws -> [String] {
        try withOpenGroup { gid, info in
            guard info.nlinks < 1_000_000 else { throw file.fail("group \(path) claims \(info.nlinks) members") }
            var names: [String] = []
            for i in 0..<info.nlinks {
                let n = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, nf_h5p_default())
                guard n >= 0, n < 65536 else { throw file.fail("cannot read member \(i) of \(path)") }
                var buf = [CChar](repeating: 0, count: Int(n) + 1)
                _ = H5Lget_name_by_idx(gid, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, nf_h5p_default())
                names.append(cString(buf))
            }
            return names
        }
    }

    func objectType(_ name: String) -> H5O_type_t? {
        file.locked {
            let p = childPath(name)
            guard H5Lexists(file.id, p, nf_h5p_default()) > 0 else { return nil }
            let oid = H5Oopen(file.id, p, nf_h5p_default())
            guard oid >= 0 else { return nil }
            defer { H5Oclose(oid) }
            var t = H5I_BADID
            t = H5Iget_type(oid)
            switch t {
            case H5I_GROUP: return H5O_TYPE_GROUP
            case H5I_DATASET: return H5O_TYPE_DATASET
            default: return H5O_TYPE_UNKNOWN
            }
        }
    }

    public func hasGroup(_ name: String) -> Bool { objectType(name) == H5O_TYPE_GROUP }
    public func hasDataset(_ name: String) -> Bool { objectType(name) == H5O_TYPE_DATASET }

    public func group(_ name: String) throws -> HDF5Group {
        guard hasGroup(name) else { throw file.fail("missing group \(childPath(name))") }
        return HDF5Group(file: file, path: childPath(name))
    }

    public func dataset(_ name: String) throws -> HDF5Dataset {
        guard hasDataset(name) else { throw file.fail("missing dataset \(childPath(name))") }
        return HDF5Dataset(file: file, path: childPath(name))
    }

    public func attributeNames() throws -> [String] {
        try file.locked { try withObject(file, path) { attributeNamesOf(file, $0) } }
    }

    public func attribute(_ name: String) throws -> HDF5Attribute? {
        try file.locked {
            try withObject(file, path) { oid in
                H5Aexists(oid, name) > 0 ? HDF5Attribute(file: file, objectPath: path, name: name) : nil
            }
        }
    }
}

func withObject<T>(_ file: HDF5File, _ path: String, _ body: (hid_t) throws -> T) throws -> T {
    let oid = H5Oopen(file.id, path, nf_h5p_default())
    guard oid >= 0 else { throw file.fail("cannot open \(path)") }
    defer { H5Oclose(oid) }
    return try body(oid)
}

func attributeNamesOf(_ file: HDF5File, _ oid: hid_t) -> [String] {
    let count = nf_h5_num_attrs(oid)
    guard count >= 0 else { return [] }
    var names: [String] = []
    for i in 0..<hsize_t(min(count, 10_000)) {
        let n = H5Aget_name_by_idx(oid, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nil, 0, nf_h5p_default())
        let m = n >= 0 ? n : H5Aget_name_by_idx(oid, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, nf_h5p_default())
        guard m >= 0, m < 65536 else { continue }
        var buf = [CChar](repeating: 0, count: Int(m) + 1)
        if n >= 0 {
            _ = H5Aget_name_by_idx(oid, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, &buf, Int(m) + 1, nf_h5p_default())
        } else {
            _ = H5Aget_name_by_idx(oid, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(m) + 1, nf_h5p_default())
        }
        names.append(cString(buf))
    }
    return names
}

func valueClass(_ tid: hid_t) -> HDF5ValueClass {
    let size = H5Tget_size(tid)
    switch H5Tget_class(tid) {
    case H5T_INTEGER: return .integer(signed: H5Tget_sign(tid) == H5T_SGN_2, bytes: size)
    case H5T_FLOAT: return .float(bytes: size)
    case H5T_STRING: return .string
    default: return .other
    }
}

func shapeOf(_ sid: hid_t) -> [Int]? {
    let rank = H5Sget_simple_extent_ndims(sid)
    guard rank >= 0, rank <= 32 else { return nil }
    var dims = [hsize_t](repeating: 0, count: Int(rank))
    guard H5Sget_simple_extent_dims(sid, &dims, nil) >= 0 else { return nil }
    return dims.map { Int(clamping: $0) }
}

/// Reads numbers (any integer or float class) converted to Double, or strings.
func readValues(file: HDF5File, what: String, typeID: hid_t, count: Int,
                read: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> HDF5Values {
    switch valueClass(typeID) {
    case .integer, .float:
        var out = [Double](repeating: 0, count: count)
        let st = out.withUnsafeMutableBytes { read(nf_h5t_native_double(), $0.baseAddress!) }
        guard st >= 0 else { throw file.fail("cannot read \(what)") }
        return .numbers(out)
    case .string:
        if H5Tis_variable_str(typeID) > 0 {
            // A memory type derived from the stored one keeps its character set: an ASCII memory
            // type makes libhdf5 refuse UTF-8 strings unless an earlier read registered the path.
            let mem = H5Tget_native_type(typeID, H5T_DIR_ASCEND)
            guard mem >= 0 else { throw file.fail("\(what) has an unreadable string type") }
            defer { H5Tclose(mem) }
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            let st = ptrs.withUnsafeMutableBytes { read(mem, $0.baseAddress!) }
            guard st >= 0 else { throw file.fail("cannot read \(what)") }
            defer { for p in ptrs { free(p) } }
            return .strings(ptrs.map { $0.map { String(cString: $0) } ?? "" })
        } else {
            let size = H5Tget_size(typeID)
            guard size > 0, size < 1 << 24 else { throw file.fail("\(what) has a bad string size") }
            let mem = H5Tcopy(typeID); defer { H5Tclose(mem) }
            var buf = [UInt8](repeating: 0, count: size * count)
            let st = buf.withUnsafeMutableBytes { read(mem, $0.baseAddress!) }
            guard st >= 0 else { throw file.fail("cannot read \(what)") }
            return .strings((0..<count).map { i in
                let s = buf[(i * size)..<((i + 1) * size)]
                let end = s.firstIndex(of: 0) ?? s.endIndex
                return String(decoding: s[s.startIndex..<end], as: UTF8.self)
            })
        }
    case .other:
        throw file.fail("\(what) has an unsupported type")
    }
}

public enum HDF5Values: Sendable, Equatable {
    case numbers([Double])
    case strings([String])
    public var strings: [String]? { if case .strings(let s) = self { return s }; return nil }
    public var numbers: [Double]? { if case .numbers(let n) = self { return n }; return nil }
}

/// An attribute of a group or dataset.
public struct HDF5Attribute: Sendable {
    public let file: HDF5File
    public let objectPath: String
    public let name: String

    /// All values (a scalar attribute gives one value), as numbers or strings.
    public func read() throws -> HDF5Values {
        try file.locked {
            try withObject(file, objectPath) { oid in
                let aid = H5Aopen(oid, name, nf_h5p_default())
                guard aid >= 0 else { throw file.fail("cannot open attribute \(name) of \(objectPath)") }
                defer { H5Aclose(aid) }
                let sid = H5Aget_space(aid); defer { H5Sclose(sid) }
                let n = H5Sget_simple_extent_npoints(sid)
                guard n >= 0, n < 10_000_000 else { throw file.fail("attribute \(name) of \(objectPath) has a bad size") }
                let tid = H5Aget_type(aid); defer { H5Tclose(tid) }
                if n == 0 { return .numbers([]) }
                return try readValues(file: file, what: "attribute \(name) of \(objectPath)", typeID: tid,
                                      count: Int(n)) { mem, buf in H5Aread(aid, mem, buf) }
            }
        }
    }
}

/// A dataset: its shape, value class, and readers that refuse sizes the file cannot hold.
public struct HDF5Dataset: Sendable {
    public let file: HDF5File
    public let path: String

    public struct Info: Sendable {
        public var shape: [Int]
        public var valueClass: HDF5ValueClass
        /// Bytes the dataset occupies in the file (compressed size for chunked data).
        public var storageBytes: Int
        /// Number of values; Int.max when the product overflows (checkSize then refuses it).
        public var count: Int {
            var total = 1
            for d in shape {
                let (r, o) = total.multipliedReportingOverflow(by: d)
                if o { return Int.max }
                total = r
            }
            return total
        }
    }

    public func info() throws -> Info {
        try file.locked {
            let did = H5Dopen2(file.id, path, nf_h5p_default())
            guard did >= 0 else { throw file.fail("cannot open dataset \(path)") }
            defer { H5Dclose(did) }
            let sid = H5Dget_space(did); defer { H5Sclose(sid) }
            guard let shape = shapeOf(sid) else { throw file.fail("dataset \(path) has a bad shape") }
            let tid = H5Dget_type(did); defer { H5Tclose(tid) }
            return Info(shape: shape, valueClass: valueClass(tid), storageBytes: Int(clamping: H5Dget_storage_size(did)))
        }
    }

    /// Refuses datasets that would need far more memory than the file can justify.
    func checkSize(_ info: Info, bytesPerValue: Int) throws {
        var total = 1
        for d in info.shape {
            let (m, o) = total.multipliedReportingOverflow(by: d)
            guard !o else { throw file.fail("dataset \(path) has an impossible shape \(info.shape)") }
            total = m
        }
        let needed = total.multipliedReportingOverflow(by: bytesPerValue)
        // Compression rarely exceeds 1000:1 on image data; a contiguous dataset must fit the file.
        // (A corrupt file can report any storage size: the bound saturates instead of overflowing.)
        let stored = max(info.storageBytes, 0)
        let allowed = stored > (Int.max - 4096) / 1000 ? Int.max : stored * 1000 + 4096
        guard !needed.overflow, needed.partialValue <= allowed, needed.partialValue <= 1 << 34 else {
            throw file.fail("dataset \(path) declares \(info.shape) values but the file holds only \(info.storageBytes) bytes of it")
        }
    }

    /// Reads every value converted to Float (integer and float datasets).
    public func readFloats() throws -> [Float] {
        let inf = try info()
        guard case .integer = inf.valueClass else {
            guard case .float = inf.valueClass else { throw file.fail("dataset \(path) is not numeric") }
            return try readFloatsUnchecked(inf)
        }
        return try readFloatsUnchecked(inf)
    }

    func readFloatsUnchecked(_ inf: Info) throws -> [Float] {
        try checkSize(inf, bytesPerValue: 4)
        return try file.locked {
            let did = H5Dopen2(file.id, path, nf_h5p_default())
            guard did >= 0 else { throw file.fail("cannot open dataset \(path)") }
            defer { H5Dclose(did) }
            var out = [Float](repeating: 0, count: inf.count)
            if inf.count == 0 { return out }
            let st = out.withUnsafeMutableBytes {
                H5Dread(did, nf_h5t_native_float(), nf_h5s_all(), nf_h5s_all(), nf_h5p_default(), $0.baseAddress!)
            }
            guard st >= 0 else { throw file.fail("cannot read dataset \(path) (corrupt or truncated)") }
            return out
        }
    }

    /// Reads every value as stored (native memory type of the same class and size, little-endian
    /// on every platform NanoFind runs on). Returns the bytes.
    public func readNativeBytes() throws -> [UInt8] {
        let inf = try info()
        let memType: hid_t
        switch inf.valueClass {
        case .integer(let signed, let bytes):
            switch (signed, bytes) {
            case (true, 1): memType = nf_h5t_native_int8()
            case (false, 1): memType = nf_h5t_native_uint8()
            case (true, 2): memType = nf_h5t_native_int16()
            case (false, 2): memType = nf_h5t_native_uint16()
            case (true, 4): memType = nf_h5t_native_int32()
            case (false, 4): memType = nf_h5t_native_uint32()
            case (true, 8): memType = nf_h5t_native_int64()
            case (false, 8): memType = nf_h5t_native_uint64()
            default: throw file.fail("dataset \(path) has an unsupported integer size \(bytes)")
            }
        case .float(let bytes):
            switch bytes {
            case 4: memType = nf_h5t_native_float()
            case 8: memType = nf_h5t_native_double()
            default: throw file.fail("dataset \(path) has an unsupported float size \(bytes)")
            }
        default: throw file.fail("dataset \(path) is not numeric")
        }
        let bpv: Int
        switch inf.valueClass { case .integer(_, let b), .float(let b): bpv = b; default: bpv = 1 }
        try checkSize(inf, bytesPerValue: bpv)
        return try file.locked {
            let did = H5Dopen2(file.id, path, nf_h5p_default())
            guard did >= 0 else { throw file.fail("cannot open dataset \(path)") }
            defer { H5Dclose(did) }
            var out = [UInt8](repeating: 0, count: inf.count * bpv)
            if out.isEmpty { return out }
            let st = out.withUnsafeMutableBytes {
                H5Dread(did, memType, nf_h5s_all(), nf_h5s_all(), nf_h5p_default(), $0.baseAddress!)
            }
            guard st >= 0 else { throw file.fail("cannot read dataset \(path) (corrupt or truncated)") }
            return out
        }
    }

    public func attributeNames() throws -> [String] {
        try file.locked { try withObject(file, path) { attributeNamesOf(file, $0) } }
    }

    public func attribute(_ name: String) throws -> HDF5Attribute? {
        try file.locked {
            try withObject(file, path) { oid in
                H5Aexists(oid, name) > 0 ? HDF5Attribute(file: file, objectPath: path, name: name) : nil
            }
        }
    }
}

func cString(_ buf: [CChar]) -> String {
    let bytes = buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
