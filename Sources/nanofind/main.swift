print("nanofind")
