/// An always-on check for kernels and ops. `precondition` is compiled out under `-Ounchecked`,
/// which the kernel targets build with, so every shape, stride and size check that guards a
/// raw-pointer kernel goes through this instead: it stays in release builds and stops with the
/// kernel's name (file and function) and the message, which names the shapes. Calls sit outside
/// inner loops; the message is built only on failure.
@inlinable @inline(__always)
public func require(_ condition: Bool, _ message: @autoclosure () -> String = "",
                    function: StaticString = #function, file: StaticString = #fileID) {
    if _slowPath(!condition) { requireFailed(message(), function: function, file: file) }
}

/// Stops the process with the failed check's kernel and message (kept out of line, so the
/// check itself is one compare and branch).
@inline(never)
public func requireFailed(_ message: String, function: StaticString, file: StaticString) -> Never {
    let kernel = "\(file)".split(separator: "/").last.map { String($0.dropLast(".swift".count)) } ?? "\(file)"
    fatalError("NanoFind check failed in \(kernel).\(function): \(message.isEmpty ? "shapes do not match" : message)")
}
