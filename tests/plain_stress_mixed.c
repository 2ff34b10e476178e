#include <stdio.h>
int main(void){puts("1..1\nok 1 - placeholder");return 0;}
