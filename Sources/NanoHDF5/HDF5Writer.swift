import CHDF5
import Foundation

/// A small HDF5 writer: groups, numeric datasets from native bytes, numeric and string
/// attributes. Enough to write test files and simple outputs; every failure names the file and
/// the object.
public final class HDF5Writer: @unchecked Sendable {
    public let path: String
    let id: hid_t
    private var closed = false

    /// H5F_ACC_TRUNC (its C macro also calls H5open, so Swift cannot import it).
    static let truncate: UInt32 = 0x0002

    /// Creates (or truncates) the file at `path`.
    public init(path: String) throws {
        self.path = path
        HDF5File.lock.lock(); defer { HDF5File.lock.unlock() }
        H5Eset_auto2(nf_h5e_default(), nil, nil)
        let fid = H5Fcreate(path, HDF5Writer.truncate, nf_h5p_default(), nf_h5p_default())
        guard fid >= 0 else { throw HDF5Error(file: path, reason: "cannot create HDF5 file") }
        id = fid
    }

    deinit { close() }

    /// Flushes and closes the file; later calls fail.
    public func close() {
        HDF5File.lock.lock(); defer { HDF5File.lock.unlock() }
        guard !closed else { return }
        closed = true
        H5Fclose(id)
    }

    func fail(_ reason: String) -> HDF5Error { HDF5Error(file: path, reason: reason) }

    func locked<T>(_ body: () throws -> T) throws -> T {
        HDF5File.lock.lock(); defer { HDF5File.lock.unlock() }
        guard !closed else { throw fail("file is closed") }
        return try body()
    }

    static func memoryType(_ c: HDF5ValueClass) -> hid_t? {
        switch c {
        case .integer(true, 1): return nf_h5t_native_int8()
        case .integer(false, 1): return nf_h5t_native_uint8()
        case .integer(true, 2): return nf_h5t_native_int16()
        case .integer(false, 2): return nf_h5t_native_uint16()
        case .integer(true, 4): return nf_h5t_native_int32()
        case .integer(false, 4): return nf_h5t_native_uint32()
        case .integer(true, 8): return nf_h5t_native_int64()
        case .integer(false, 8): return nf_h5t_native_uint64()
        case .float(4): return nf_h5t_native_float()
        case .float(8): return nf_h5t_native_double()
        default: return nil
        }
    }

    /// Creates the group at absolute `path` (its parent must exist).
    public func createGroup(_ path: String) throws {
        try locked {
            let gid = H5Gcreate2(id, path, nf_h5p_default(), nf_h5p_default(), nf_h5p_default())
            guard gid >= 0 else { throw fail("cannot create group \(path)") }
            H5Gclose(gid)
        }
    }

    /// Writes a dataset of `shape` from native little-endian `bytes` of `valueClass`.
    public func writeDataset(_ path: String, shape: [Int], valueClass: HDF5ValueClass, bytes: [UInt8]) throws {
        guard let type = HDF5Writer.memoryType(valueClass) else { throw fail("dataset \(path): unsupported type \(valueClass)") }
        let size: Int
        switch valueClass { case .integer(_, let b), .float(let b): size = b; default: size = 0 }
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) * size == bytes.count else {
            throw fail("dataset \(path): \(bytes.count) bytes do not match shape \(shape)")
        }
        try locked {
            var dims = shape.map { hsize_t($0) }
            let sid = H5Screate_simple(Int32(shape.count), &dims, nil)
            guard sid >= 0 else { throw fail("dataset \(path): cannot create its dataspace") }
            defer { H5Sclose(sid) }
            let did = H5Dcreate2(id, path, type, sid, nf_h5p_default(), nf_h5p_default(), nf_h5p_default())
            guard did >= 0 else { throw fail("cannot create dataset \(path)") }
            defer { H5Dclose(did) }
            if bytes.isEmpty { return }
            let st = bytes.withUnsafeBytes { H5Dwrite(did, type, nf_h5s_all(), nf_h5s_all(), nf_h5p_default(), $0.baseAddress!) }
            guard st >= 0 else { throw fail("cannot write dataset \(path)") }
        }
    }

    private func attribute(_ objectPath: String, _ name: String, type: hid_t, count: Int?,
                           write: (hid_t) -> herr_t) throws {
        try locked {
            let oid = H5Oopen(id, objectPath, nf_h5p_default())
            guard oid >= 0 else { throw fail("cannot open \(objectPath) to add attribute \(name)") }
            defer { H5Oclose(oid) }
            let sid: hid_t
            if let count {
                var dims = [hsize_t(count)]
                sid = H5Screate_simple(1, &dims, nil)
            } else {
                sid = H5Screate(H5S_SCALAR)
            }
            guard sid >= 0 else { throw fail("attribute \(name) of \(objectPath): cannot create its dataspace") }
            defer { H5Sclose(sid) }
            let aid = H5Acreate2(oid, name, type, sid, nf_h5p_default(), nf_h5p_default())
            guard aid >= 0 else { throw fail("cannot create attribute \(name) of \(objectPath)") }
            defer { H5Aclose(aid) }
            guard write(aid) >= 0 else { throw fail("cannot write attribute \(name) of \(objectPath)") }
        }
    }

    /// A numeric attribute: float64, or int64 when `integer`; scalar when one value and `scalar`.
    public func setAttribute(_ objectPath: String, _ name: String, numbers: [Double], integer: Bool = false,
                             scalar: Bool = true) throws {
        guard !numbers.isEmpty else { throw fail("attribute \(name) of \(objectPath): no values") }
        let count: Int? = scalar && numbers.count == 1 ? nil : numbers.count
        if integer {
            let values = numbers.map { Int64($0) }
            try attribute(objectPath, name, type: nf_h5t_native_int64(), count: count) { aid in
                values.withUnsafeBytes { H5Awrite(aid, nf_h5t_native_int64(), $0.baseAddress!) }
            }
        } else {
            try attribute(objectPath, name, type: nf_h5t_native_double(), count: count) { aid in
                numbers.withUnsafeBytes { H5Awrite(aid, nf_h5t_native_double(), $0.baseAddress!) }
            }
        }
    }

    /// A scalar string attribute, UTF-8, fixed-length or variable-length.
    public func setAttribute(_ objectPath: String, _ name: String, string: String, variableLength: Bool = false) throws {
        let type = try locked { () -> hid_t in
            let t = H5Tcopy(nf_h5t_c_s1())
            guard t >= 0 else { throw fail("cannot create a string type") }
            H5Tset_size(t, variableLength ? Int(bitPattern: UInt(bitPattern: -1)) : max(1, string.utf8.count))
            H5Tset_cset(t, H5T_CSET_UTF8)
            return t
        }
        defer { HDF5File.lock.lock(); H5Tclose(type); HDF5File.lock.unlock() }
        try string.withCString { cs in
            try attribute(objectPath, name, type: type, count: nil) { aid in
                if variableLength {
                    var p: UnsafePointer<CChar>? = cs
                    return withUnsafeMutablePointer(to: &p) { H5Awrite(aid, type, UnsafeRawPointer($0)) }
                }
                return H5Awrite(aid, type, cs)
            }
        }
    }
}
